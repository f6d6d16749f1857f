//! `[train]`: epochs, minibatch size, seed, threads, checkpoints and the
//! matrix products' precision.

use serde::Deserialize;

/// `[train]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Passes over the training data.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Minibatch size.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Seed of initialisation, shuffling and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Kernel threads (0: all cores; at most [`strata_kernels::parallel::MAX_THREADS`]).
    #[serde(default)]
    pub threads: usize,
    /// Write a checkpoint every this many epochs.
    #[serde(default = "default_checkpoint")]
    pub checkpoint_every: usize,
    /// Warn when a layer's dead-unit fraction passes this.
    #[serde(default = "default_dead")]
    pub dead_unit_warning: f64,
    /// Label smoothing `ε` in `[0, 1)`: the training loss's targets are
    /// `(1 − ε)·onehot + ε/C` (0, the default: plain cross-entropy).
    #[serde(default)]
    pub label_smoothing: f64,
    /// Under `mpirun`: batch norm normalises by the whole minibatch's
    /// statistics, added over the ranks, instead of each rank's share
    /// (false, the default). No effect in one process.
    #[serde(default)]
    pub sync_batchnorm: bool,
    /// How the matrix products of fully connected layers are computed:
    /// `"f32"` (the default) or `"bf16"` (operands rounded to bfloat16,
    /// f32 sums, on AMX tiles where the CPU has them, else f32; see
    /// [`strata_kernels::gemm::MatmulPrecision`]). Convolutions stay f32.
    #[serde(default = "default_precision")]
    pub matmul_precision: String,
}

impl TrainSpec {
    /// [`TrainSpec::matmul_precision`] parsed (checked when the spec is).
    pub fn precision(&self) -> Result<strata_kernels::gemm::MatmulPrecision, String> {
        self.matmul_precision.parse()
    }
}

fn default_epochs() -> usize {
    10
}
fn default_batch() -> usize {
    128
}
fn default_seed() -> u64 {
    1
}
fn default_checkpoint() -> usize {
    1
}
fn default_precision() -> String {
    "f32".into()
}
fn default_dead() -> f64 {
    0.5
}

impl Default for TrainSpec {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}
