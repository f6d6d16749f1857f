//! The specification language (TOML): one file describes data, model,
//! optimiser and schedule, training and evaluation.
//!
//! ```toml
//! [data]
//! dataset = "digits"        # a name (digits, mnist, fashion-mnist, cifar10) or a path
//! validation = 300          # training items held out for validation
//!
//! [model]
//! layers = ["flatten", { linear = 64 }, "relu", { dropout = 0.2 }, { linear = 10 }]
//!
//! [optimizer]
//! kind = "sgd"              # sgd | adagrad | rmsprop | adam | adamw
//! momentum = 0.9
//! weight_decay = 1e-4       # λ of the (λ/2)Σ wᵀw penalty on weights
//! schedule = { kind = "inverse-epoch", a = 10.0, b = 1.0 }   # η = 1/(a + b·epoch)
//!
//! [train]
//! epochs = 10
//! batch = 64
//! seed = 1
//! ```
//!
//! Errors name the file, the line and the field, and say what was expected.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use strata_optim::{Method, Schedule};

/// A problem with a spec, located in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    /// The spec file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field, e.g. `model.layers[3]` or `train.epochs`.
    pub field: String,
    /// What was wrong and what was expected.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for SpecError {}

/// The whole experiment.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Where the spec came from.
    pub file: PathBuf,
    /// The text it was parsed from (after overrides), saved next to checkpoints.
    pub source: String,
    /// Data section.
    pub data: DataSpec,
    /// The layers, in order.
    pub layers: Vec<LayerSpec>,
    /// The line of each layer in the source (for messages).
    pub layer_lines: Vec<usize>,
    /// `model.init_epsilon`: the chapter's ε in the initialisation
    /// `w ~ N(0, ε·√2/n)` of the linear and conv layers listed in
    /// `model.layers` (default √2, He's `2/n`; residual blocks keep it).
    pub init_epsilon: Option<f64>,
    /// Optimiser section.
    pub optimizer: OptimizerSpec,
    /// Parsed `data.preprocess`.
    pub preprocess: Vec<strata_data::Preprocess>,
    /// Parsed `data.augment`.
    pub augment: Vec<strata_data::AugmentStep>,
    /// Training section.
    pub train: TrainSpec,
    /// Evaluation section.
    pub eval: EvalSpec,
}

/// `[data]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Dataset name or path.
    pub dataset: String,
    /// Training items held out as the validation split.
    #[serde(default)]
    pub validation: usize,
    /// Use only `subset` training items, a random choice fixed by `train.seed` (quick runs).
    #[serde(default)]
    pub subset: Option<usize>,
    /// Use only `test_subset` test items, a random choice fixed by `train.seed` (quick runs).
    #[serde(default)]
    pub test_subset: Option<usize>,
    /// Add a class `"background"` for detection by windows (section 12.4):
    /// `background · n` windows cut from canvases of each split's own images
    /// (empty places, parts of objects, windows astride two), after the
    /// subsets are drawn ([`strata_data::with_background`]).
    #[serde(default)]
    pub background: Option<f64>,
    /// Preprocessing steps, fitted on the training split (see [`crate::data_spec`]).
    #[serde(default)]
    pub preprocess: Vec<toml::Value>,
    /// Augmentation of training minibatches (see [`crate::data_spec`]).
    #[serde(default)]
    pub augment: Option<toml::Value>,
}

/// `[optimizer]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    /// `sgd`, `adagrad`, `rmsprop`, `adam` or `adamw`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Learning rate of the default constant schedule.
    #[serde(default)]
    pub lr: Option<f64>,
    /// Momentum `μ` for `sgd` (0: plain gradient descent).
    #[serde(default)]
    pub momentum: f64,
    /// `λ`, weight of the L2 penalty on weights (decoupled for `adamw`).
    #[serde(default)]
    pub weight_decay: f64,
    /// Adagrad/RMSprop `α`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// RMSprop decay rate `Δ`.
    #[serde(default = "default_decay")]
    pub decay: f64,
    /// Adam `β₁`.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// Adam `β₂`.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Adam `ε`.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Learning-rate schedule (default: constant `lr`).
    #[serde(default)]
    pub schedule: Option<ScheduleSpec>,
    /// Linear warm-up steps before the schedule.
    #[serde(default)]
    pub warmup_steps: u64,
    /// Nesterov momentum for `sgd` (implies the PyTorch convention).
    #[serde(default)]
    pub nesterov: bool,
    /// Momentum convention of `sgd`: `"chapter"` (12.2.4's `v ← μv + η∇;
    /// θ ← θ − v`, the default) or `"pytorch"` (`b ← μb + ∇; θ ← θ − ηb`).
    #[serde(default)]
    pub convention: Option<String>,
    /// Per-name settings, first match wins: `[{ params = "*.beta", lr_scale = 64,
    /// decay_scale = 0.015625 }]` (airbench's batch-norm shifts), `epochs = 3`
    /// to freeze the group after that many epochs.
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
    /// Look-ahead: `{ every = 5, decay = 0.7738, power = 3 }`.
    #[serde(default)]
    pub lookahead: Option<LookaheadSpec>,
}

/// One entry of `optimizer.groups`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Parameter names, `*` matching any run of characters (`*.beta`).
    pub params: String,
    /// Factor on the learning rate.
    #[serde(default = "one")]
    pub lr_scale: f64,
    /// Factor on the weight decay.
    #[serde(default = "one")]
    pub decay_scale: f64,
    /// Train only in the first this many epochs.
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Whether the weight decay applies (default: to weights, not to biases
    /// and batch-norm parameters).
    #[serde(default)]
    pub decay: Option<bool>,
}

fn one() -> f64 {
    1.0
}

/// `optimizer.lookahead`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookaheadSpec {
    /// Steps between synchronisations.
    #[serde(default = "default_every")]
    pub every: u64,
    /// The decay reached at the end of the run.
    pub decay: f64,
    /// Exponent of the decay's growth over the run.
    #[serde(default = "default_power")]
    pub power: f64,
}

fn default_every() -> u64 {
    5
}
fn default_power() -> f64 {
    3.0
}

fn default_kind() -> String {
    "sgd".into()
}
fn default_alpha() -> f64 {
    1e-6
}
fn default_decay() -> f64 {
    0.9
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// `optimizer.schedule`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ScheduleSpec {
    /// Fixed rate.
    Constant {
        /// The rate.
        lr: f64,
    },
    /// The chapter's `η = 1/(a + b·epoch)`.
    InverseEpoch {
        /// `a`.
        a: f64,
        /// `b`.
        b: f64,
    },
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Initial rate.
        lr: f64,
        /// Factor.
        gamma: f64,
        /// Epochs between decays.
        every: usize,
    },
    /// `lr` times a piecewise-linear factor of the fraction of the run's
    /// steps: `points = [[0, 0.2], [0.23, 1], [1, 0.07]]` (airbench's triangle).
    Piecewise {
        /// The rate a factor of 1 stands for.
        lr: f64,
        /// `[fraction, factor]` pairs, fractions increasing in `[0, 1]`.
        points: Vec<[f64; 2]>,
    },
    /// Cosine annealing from `lr` to `min_lr` over the run's steps after the warm-up.
    Cosine {
        /// Initial rate.
        lr: f64,
        /// Final rate.
        #[serde(default)]
        min_lr: f64,
    },
}

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
fn default_dead() -> f64 {
    0.5
}

impl Default for TrainSpec {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// `[eval]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Items per evaluation minibatch.
    #[serde(default = "default_eval_batch")]
    pub batch: usize,
    /// Average the predictions over 10 views (centre, 4 corners and their
    /// mirrors) of each held-out image, cropped to the network's input size;
    /// windows that coincide count once (views as large as the image: the
    /// image and its mirror).
    #[serde(default)]
    pub multi_crop: bool,
    /// Whether multi-crop also uses the mirror images (10 views instead of 5);
    /// turn off where mirroring changes the class (digits, text).
    #[serde(default = "default_true")]
    pub mirror: bool,
    /// Zeros added on every side of each held-out image before multi-crop
    /// cuts its views (as the training crop's `pad`): with views as large as
    /// the image, the centre view is the image and the corner views are it
    /// shifted by `pad` pixels diagonally (5 views, 10 with mirrors).
    #[serde(default)]
    pub pad: usize,
    /// airbench's test-time augmentation: the logits are averaged over the
    /// image and its mirror (¼ each) and both shifted by `tta` pixels
    /// up-left and down-right, edges reflected (⅛ each); `tta = 0`: the
    /// image and its mirror (½ each). Instead of `multi_crop`.
    #[serde(default)]
    pub tta: Option<usize>,
}

fn default_true() -> bool {
    true
}

fn default_eval_batch() -> usize {
    500
}

impl Default for EvalSpec {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// One layer of `model.layers`.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerSpec {
    /// `{ linear = 256 }` or `{ linear = { out = 256, bias = false } }`.
    Linear {
        /// Units.
        out: usize,
        /// Whether the layer has biases (without, they are held at 0).
        bias: bool,
    },
    /// `"relu"`.
    Relu,
    /// `"gelu"`: GELU in its tanh form.
    Gelu,
    /// `{ scale = 0.111 }`: multiplies by a fixed factor (e.g. on the logits).
    Scale {
        /// The factor.
        factor: f64,
    },
    /// `{ whiten = { kernel = 2, eps = 5e-4, images = 5000, bias_epochs = 3 } }`:
    /// the patch-whitening convolution (section 12.4.2's ZCA made a layer,
    /// as airbench does): `2·C·k²` frozen `k × k` filters, the eigenvectors of
    /// the covariance of the training images' patches scaled by `1/√(λ + ε)`
    /// and their negations, with biases that centre the patches and train
    /// for the first `bias_epochs` epochs (all of them when absent). Fitted on
    /// `images` training images spread evenly over the training set; it must
    /// be the first layer.
    Whiten {
        /// Patch side `k`.
        kernel: usize,
        /// `ε` added to every eigenvalue.
        eps: f64,
        /// Training images the covariance is estimated on.
        images: usize,
        /// Epochs the biases train (`None`: all).
        bias_epochs: Option<usize>,
    },
    /// `{ dropout = 0.5 }`.
    Dropout {
        /// Drop probability.
        p: f64,
    },
    /// `"flatten"`.
    Flatten,
    /// `{ conv = { out = 32, kernel = 3, stride = 1, pad = "same", border = "zero", bias = true } }`.
    Conv {
        /// Output slices (kernels).
        out: usize,
        /// Square kernel side (odd or even).
        kernel: usize,
        /// Stride.
        stride: usize,
        /// `"same"`, `"valid"` or a number of rows/columns per side.
        pad: PadSpec,
        /// How the padding is filled: `"zero"`, `"reflect"`, `"replicate"` or `{ constant = v }`.
        border: strata_nn::Border,
        /// Whether the layer has a bias per output slice.
        bias: bool,
        /// `init = "dirac"`: the first `min(in, out)` kernels start as the
        /// identity ([`strata_nn::Conv2d::dirac`]); otherwise the random law only.
        dirac: bool,
    },
    /// `{ maxpool = 2 }` or `{ maxpool = { size = 3, stride = 2, odd = "ceil" } }`.
    MaxPool {
        /// Window side.
        size: usize,
        /// Stride (default: the window side).
        stride: usize,
        /// The chapter's two policies for odd sizes: drop (`"floor"`) or impute by copying the edge (`"ceil"`).
        ceil: bool,
    },
    /// `"global-avgpool"`: mean over each slice, `[C, H, W] → [C]`.
    GlobalAvgPool,
    /// `"batchnorm"` or `{ batchnorm = { scale = false, momentum = 0.4, eps = 1e-12 } }`:
    /// per feature or per channel.
    BatchNorm {
        /// Whether `γ` is learned (`false`: held at 1, only the shift `β` trains).
        scale: bool,
        /// Weight of each minibatch in the running estimates (default 0.1).
        momentum: f64,
        /// `ε` added to the variance (default 1e-5).
        eps: f64,
    },
    /// `{ residual = { out = 64, stride = 1, kind = "pre-activation", batchnorm = true } }`:
    /// one residual layer (convolutional on blocks, fully connected on vectors).
    Residual(ResidualSpec),
    /// `{ stage = { blocks = 3, out = 32, stride = 2, kind = "original" } }`:
    /// `blocks` residual layers, the first with the stride (and a projection).
    Stage {
        /// Residual layers in the stage.
        blocks: usize,
        /// The layers' settings (the stride applies to the first one).
        block: ResidualSpec,
    },
    /// `{ resnet = { depth = 20, kind = "original", width = 16, bottleneck = false } }`:
    /// a whole CIFAR-style ResNet of depth 6n+2 (or 9n+2 with bottlenecks),
    /// ending in the linear layer to the classes.
    ResNet {
        /// Weighted layers.
        depth: usize,
        /// Original or pre-activation residual layers.
        kind: strata_nn::ResidualKind,
        /// First-stage width.
        width: usize,
        /// Bottleneck blocks.
        bottleneck: bool,
    },
}

/// Padding of a convolution in the spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadSpec {
    /// Output size `⌈n/stride⌉`.
    Same,
    /// No padding.
    Valid,
    /// This many rows/columns on every side.
    Uniform(usize),
}

/// Settings of a residual layer in the spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResidualSpec {
    /// Output width (slices or units).
    pub out: usize,
    /// Stride of the first convolution (1 for fully connected).
    pub stride: usize,
    /// Original `F(x + W₁q + b₁)` or pre-activation `x + W₁q + b₁`.
    pub kind: strata_nn::ResidualKind,
    /// Batch normalisation inside the layer.
    pub batchnorm: bool,
}

impl LayerSpec {
    /// The spec's name of this layer kind.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Linear { .. } => "linear",
            LayerSpec::Relu => "relu",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Conv { .. } => "conv",
            LayerSpec::MaxPool { .. } => "maxpool",
            LayerSpec::GlobalAvgPool => "global-avgpool",
            LayerSpec::BatchNorm { .. } => "batchnorm",
            LayerSpec::Gelu => "gelu",
            LayerSpec::Scale { .. } => "scale",
            LayerSpec::Whiten { .. } => "whiten",
            LayerSpec::Residual(_) => "residual",
            LayerSpec::Stage { .. } => "stage",
            LayerSpec::ResNet { .. } => "resnet",
        }
    }
}

/// Layer kinds the spec knows, for error messages.
pub const LAYER_KINDS: &str =
    "linear, relu, gelu, dropout, flatten, conv, maxpool, global-avgpool, batchnorm, scale, whiten, residual, stage, resnet";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    data: DataSpec,
    model: RawModel,
    #[serde(default)]
    optimizer: OptimizerSpec,
    #[serde(default)]
    train: TrainSpec,
    #[serde(default)]
    eval: EvalSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    layers: Vec<toml::Spanned<toml::Value>>,
    #[serde(default)]
    init_epsilon: Option<f64>,
}

/// 1-based line of byte offset `pos` in `text`.
/// The dotted key whose value sits at byte `pos` of `text`, with its section
/// (`train.epochs` for `epochs = -3` under `[train]`;
/// `optimizer.schedule.every` for `every = -3` inside `schedule = { … }`
/// under `[optimizer]`), or "" when `pos` is not in a `key = value` line.
fn key_at(text: &str, pos: usize) -> String {
    let pos = pos.min(text.len());
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
    let line = &text[start..end];
    if line.trim_start().starts_with('#') {
        return String::new();
    }
    let Some((outer, _)) = line.split_once('=') else {
        return String::new();
    };
    let mut key = outer.trim().to_string();
    // Inside an inline table: the innermost key before `pos`.
    let before = &text[start..pos];
    if let Some(open) = before.find('{') {
        let inner = &before[open + 1..];
        if let Some(eq) = inner.rfind('=') {
            let k = inner[..eq].rsplit([',', '{']).next().unwrap_or("").trim();
            if !k.is_empty() {
                key = format!("{key}.{k}");
            }
        }
    }
    let section = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .and_then(|l| l.strip_prefix('[')?.split(']').next())
        .map(str::trim);
    match section {
        Some(sec) if !key.is_empty() => format!("{sec}.{key}"),
        _ => key,
    }
}

/// serde's wording for a mistyped value, in words a spec writer can act on.
fn explain(message: &str) -> String {
    let kinds = "a table such as { kind = \"cosine\", lr = 0.1 }: kind is \"constant\", \
                 \"inverse-epoch\", \"step\", \"cosine\" or \"piecewise\", rates and factors are \
                 numbers, `every` a whole number ≥ 1";
    if message.contains("ScheduleSpec") {
        format!(
            "optimizer.schedule: expected {kinds} ({})",
            message.replace("internally tagged enum ScheduleSpec", "a schedule")
        )
    } else if message.contains("number too large to fit in target type") {
        "the number is too large for this field".into()
    } else if let Some(rest) = message.strip_prefix("invalid value: integer `") {
        let v = rest.split('`').next().unwrap_or("");
        if message.contains("expected usize")
            || message.contains("expected u64")
            || message.contains("expected u32")
        {
            format!("expected a whole number ≥ 0, found {v}")
        } else {
            message.to_string()
        }
    } else {
        message.to_string()
    }
}

fn line_of(text: &str, pos: usize) -> usize {
    text[..pos.min(text.len())].matches('\n').count() + 1
}

/// Line of `key` inside `[section]` (best effort, for validation messages).
fn field_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut in_section = false;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            in_section = t.trim_matches(|c| c == '[' || c == ']').trim() == section;
            continue;
        }
        if in_section && t.split('=').next().map(str::trim) == Some(key) {
            return Some(i + 1);
        }
    }
    None
}

impl Spec {
    /// The training augmentation, seeded from `train.seed` (None without steps).
    pub fn augmentation(&self) -> Option<strata_data::Augmentation> {
        if self.augment.is_empty() {
            return None;
        }
        let a = strata_data::Augmentation::new(self.train.seed ^ 0xa96_0000);
        Some(self.augment.iter().cloned().fold(a, |a, s| a.then(s)))
    }

    /// Reads and validates a spec file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SpecError> {
        Self::load_with(path, &[])
    }

    /// Reads a spec file and applies `overrides` (`section.key=value`, the value
    /// in TOML syntax) before validating it.
    pub fn load_with(path: impl AsRef<Path>, overrides: &[String]) -> Result<Self, SpecError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.into(),
            line: None,
            field: String::new(),
            message: format!("cannot read the spec: {e}"),
        })?;
        Self::parse_with(&text, path, overrides)
    }

    /// This spec with `overrides` applied to its source, revalidated; the
    /// source then records them (what a run folder's `spec.toml` keeps).
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self, SpecError> {
        Self::parse_with(&self.source, &self.file, overrides)
    }

    /// Parses spec text (`file` is only used in messages).
    pub fn parse(text: &str, file: impl AsRef<Path>) -> Result<Self, SpecError> {
        Self::parse_with(text, file, &[])
    }

    /// Parses spec text with overrides applied.
    pub fn parse_with(
        text: &str,
        file: impl AsRef<Path>,
        overrides: &[String],
    ) -> Result<Self, SpecError> {
        let file = file.as_ref().to_path_buf();
        let err = |line: Option<usize>, field: &str, message: String| SpecError {
            file: file.clone(),
            line,
            field: field.into(),
            message,
        };
        let source = if overrides.is_empty() {
            text.to_string()
        } else {
            let mut doc: toml::Table = toml::from_str(text).map_err(|e| {
                err(
                    e.span().map(|s| line_of(text, s.start)),
                    "",
                    e.message().to_string(),
                )
            })?;
            for o in overrides {
                apply_override(&mut doc, o).map_err(|m| err(None, o, m))?;
            }
            toml::to_string(&doc).map_err(|e| err(None, "", e.to_string()))?
        };
        let raw: RawSpec = toml::from_str(&source).map_err(|e| {
            let line = e.span().map(|s| line_of(&source, s.start));
            let key = e.span().map_or(String::new(), |s| key_at(&source, s.start));
            err(line, &key, explain(e.message().trim()))
        })?;
        let mut layers = Vec::with_capacity(raw.model.layers.len());
        let mut layer_lines = Vec::with_capacity(raw.model.layers.len());
        for (i, l) in raw.model.layers.iter().enumerate() {
            let line = line_of(&source, l.span().start);
            let layer = parse_layer(l.get_ref())
                .map_err(|m| err(Some(line), &format!("model.layers[{i}]"), m))?;
            layers.push(layer);
            layer_lines.push(line);
        }
        if let Some(e) = raw.model.init_epsilon {
            if !(e.is_finite() && e > 0.0) {
                return Err(err(
                    field_line(&source, "model", "init_epsilon"),
                    "model.init_epsilon",
                    format!("expected a positive number (the ε of N(0, ε·√2/n)), found {e}"),
                ));
            }
        }
        if layers.is_empty() {
            return Err(err(
                field_line(&source, "model", "layers"),
                "model.layers",
                "at least one layer is needed".into(),
            ));
        }
        let mut preprocess = Vec::new();
        for (i, v) in raw.data.preprocess.iter().enumerate() {
            let p = crate::data_spec::parse_preprocess(v).map_err(|m| {
                err(
                    field_line(&source, "data", "preprocess"),
                    &format!("data.preprocess[{i}]"),
                    m,
                )
            })?;
            preprocess.push(p);
        }
        let augment = match &raw.data.augment {
            None => Vec::new(),
            Some(v) => crate::data_spec::parse_augment(v)
                .map_err(|m| err(field_line(&source, "data", "augment"), "data.augment", m))?,
        };
        let spec = Spec {
            file: file.clone(),
            source: source.clone(),
            preprocess,
            augment,
            data: raw.data,
            layers,
            layer_lines,
            init_epsilon: raw.model.init_epsilon,
            optimizer: raw.optimizer,
            train: raw.train,
            eval: raw.eval,
        };
        spec.validate().map_err(|(section, key, m)| {
            err(
                field_line(&source, section, key),
                &format!("{section}.{key}"),
                m,
            )
        })?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), (&'static str, &'static str, String)> {
        let t = &self.train;
        if t.epochs == 0 {
            return Err(("train", "epochs", "must be at least 1".into()));
        }
        if t.batch == 0 {
            return Err(("train", "batch", "must be at least 1".into()));
        }
        if t.threads > strata_kernels::parallel::MAX_THREADS {
            return Err((
                "train",
                "threads",
                format!(
                    "must be at most {} (0: all cores), got {}",
                    strata_kernels::parallel::MAX_THREADS,
                    t.threads
                ),
            ));
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            return Err((
                "train",
                "label_smoothing",
                format!("must lie in [0, 1), got {}", t.label_smoothing),
            ));
        }
        if t.checkpoint_every == 0 {
            return Err((
                "train",
                "checkpoint_every",
                "must be at least 1 epoch".into(),
            ));
        }
        for (key, v) in [
            ("subset", self.data.subset),
            ("test_subset", self.data.test_subset),
        ] {
            if v == Some(0) {
                return Err((
                    "data",
                    key,
                    "must be at least 1 item (leave it out for all)".into(),
                ));
            }
        }
        if let Some(b) = self.data.background {
            if !(b > 0.0 && b <= 10.0) {
                return Err((
                    "data",
                    "background",
                    format!("is the number of background windows per image, in (0, 10]; got {b}"),
                ));
            }
        }
        if self.eval.batch == 0 {
            return Err(("eval", "batch", "must be at least 1".into()));
        }
        if self.eval.pad > 0 && !self.eval.multi_crop {
            return Err((
                "eval",
                "pad",
                "pads the views of multi-crop: set eval.multi_crop = true too".into(),
            ));
        }
        if let Some(t) = self.eval.tta {
            if self.eval.multi_crop {
                return Err((
                    "eval",
                    "tta",
                    "is another set of test-time views: use tta or multi_crop, not both".into(),
                ));
            }
            if t > 4 {
                return Err((
                    "eval",
                    "tta",
                    format!("shifts the test images by at most 4 pixels, got {t}"),
                ));
            }
        }
        if self.eval.pad > 16 {
            return Err((
                "eval",
                "pad",
                format!("must be at most 16 pixels, got {}", self.eval.pad),
            ));
        }
        self.method().map_err(|m| ("optimizer", "kind", m))?;
        let o = &self.optimizer;
        for (key, v) in [
            ("momentum", o.momentum),
            ("decay", o.decay),
            ("beta1", o.beta1),
            ("beta2", o.beta2),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(("optimizer", key, format!("must lie in [0, 1), got {v}")));
            }
        }
        for (key, v) in [("alpha", o.alpha), ("eps", o.eps)] {
            if !(v.is_finite() && v > 0.0) {
                return Err((
                    "optimizer",
                    key,
                    format!("must be a small positive number, got {v}"),
                ));
            }
        }
        if let Some(lr) = o.lr {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(("optimizer", "lr", format!("must be positive, got {lr}")));
            }
        }
        self.schedule()
            .validate()
            .map_err(|m| ("optimizer", "schedule", m))?;
        for (i, g) in o.groups.iter().enumerate() {
            for (what, v) in [("lr_scale", g.lr_scale), ("decay_scale", g.decay_scale)] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err((
                        "optimizer",
                        "groups",
                        format!("groups[{i}] ({:?}): {what} must be ≥ 0, got {v}", g.params),
                    ));
                }
            }
            if g.params.is_empty() {
                return Err((
                    "optimizer",
                    "groups",
                    format!("groups[{i}]: params must name parameters, e.g. \"*.beta\""),
                ));
            }
        }
        if let Some(l) = &o.lookahead {
            if l.every == 0 {
                return Err((
                    "optimizer",
                    "lookahead",
                    "every must be at least 1 step".into(),
                ));
            }
            if !(0.0..1.0).contains(&l.decay) {
                return Err((
                    "optimizer",
                    "lookahead",
                    format!("decay must lie in [0, 1), got {}", l.decay),
                ));
            }
            if !(l.power.is_finite() && l.power >= 0.0) {
                return Err((
                    "optimizer",
                    "lookahead",
                    format!("power must be ≥ 0, got {}", l.power),
                ));
            }
        }
        let wd = self.optimizer.weight_decay;
        if !(wd.is_finite() && wd >= 0.0) {
            return Err((
                "optimizer",
                "weight_decay",
                format!("must be ≥ 0, got {wd}"),
            ));
        }
        Ok(())
    }

    /// The optimiser's update rule.
    pub fn method(&self) -> Result<Method, String> {
        let o = &self.optimizer;
        let torch = match o.convention.as_deref() {
            None | Some("chapter") => o.nesterov,
            Some("pytorch") => true,
            Some(c) => {
                return Err(format!(
                    "unknown momentum convention {c:?}; expected \"chapter\" or \"pytorch\""
                ))
            }
        };
        if o.nesterov && o.convention.as_deref() == Some("chapter") {
            return Err("Nesterov momentum is written in the PyTorch convention: drop convention = \"chapter\"".into());
        }
        if (o.nesterov || o.convention.is_some()) && !matches!(o.kind.as_str(), "sgd" | "momentum")
        {
            return Err(format!(
                "nesterov and convention apply to sgd, not {}",
                o.kind
            ));
        }
        if o.nesterov && o.momentum == 0.0 {
            return Err("Nesterov momentum needs optimizer.momentum > 0".into());
        }
        Ok(match o.kind.as_str() {
            "sgd" if o.momentum == 0.0 => Method::Sgd,
            "sgd" | "momentum" if torch => Method::MomentumTorch {
                mu: o.momentum,
                nesterov: o.nesterov,
            },
            "sgd" | "momentum" => Method::Momentum { mu: o.momentum },
            "adagrad" => Method::Adagrad { alpha: o.alpha },
            "rmsprop" => Method::RmsProp {
                decay: o.decay,
                alpha: o.alpha,
            },
            "adam" => Method::Adam {
                beta1: o.beta1,
                beta2: o.beta2,
                eps: o.eps,
            },
            "adamw" => Method::AdamW {
                beta1: o.beta1,
                beta2: o.beta2,
                eps: o.eps,
            },
            k => {
                return Err(format!(
                "unknown optimizer {k:?}; expected sgd, momentum, adagrad, rmsprop, adam or adamw"
            ))
            }
        })
    }

    /// The learning-rate schedule; `steps_per_epoch` sizes the cosine schedule.
    pub fn schedule_for(&self, steps_per_epoch: u64) -> Schedule {
        let o = &self.optimizer;
        let base = match &o.schedule {
            None => Schedule::Constant {
                lr: o.lr.unwrap_or(0.01),
            },
            Some(ScheduleSpec::Constant { lr }) => Schedule::Constant { lr: *lr },
            Some(ScheduleSpec::InverseEpoch { a, b }) => Schedule::InverseEpoch { a: *a, b: *b },
            Some(ScheduleSpec::Step { lr, gamma, every }) => Schedule::Step {
                lr: *lr,
                gamma: *gamma,
                every: *every,
            },
            // The cosine starts after the warm-up, so it spans the steps left:
            // the last step's rate is then `min_lr`, not what the curve has
            // reached `warmup_steps` before its end.
            Some(ScheduleSpec::Piecewise { lr, points }) => Schedule::Piecewise {
                lr: *lr,
                points: points.iter().map(|p| (p[0], p[1])).collect(),
                total_steps: (steps_per_epoch * self.train.epochs as u64)
                    .saturating_sub(o.warmup_steps)
                    .max(1),
            },
            Some(ScheduleSpec::Cosine { lr, min_lr }) => Schedule::Cosine {
                lr: *lr,
                min_lr: *min_lr,
                total_steps: (steps_per_epoch * self.train.epochs as u64)
                    .saturating_sub(o.warmup_steps)
                    .max(1),
            },
        };
        if o.warmup_steps > 0 {
            Schedule::Warmup {
                steps: o.warmup_steps,
                after: Box::new(base),
            }
        } else {
            base
        }
    }

    /// The per-name optimiser groups: those the layers imply (a whitening
    /// layer's biases that train `bias_epochs`), then `optimizer.groups`.
    pub fn groups(&self) -> Vec<strata_optim::ParamGroup> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            if let LayerSpec::Whiten {
                bias_epochs: Some(e),
                ..
            } = l
            {
                out.push(strata_optim::ParamGroup {
                    epochs: Some(*e),
                    ..strata_optim::ParamGroup::new(format!("layers.{i}.bias"))
                });
            }
        }
        out.extend(
            self.optimizer
                .groups
                .iter()
                .map(|g| strata_optim::ParamGroup {
                    pattern: g.params.clone(),
                    lr_scale: g.lr_scale,
                    decay_scale: g.decay_scale,
                    epochs: g.epochs,
                    decay: g.decay,
                }),
        );
        out
    }

    /// The look-ahead for a run of `total_steps` steps, if the spec has one.
    pub fn lookahead(&self, total_steps: u64) -> Option<strata_optim::Lookahead> {
        self.optimizer
            .lookahead
            .as_ref()
            .map(|l| strata_optim::Lookahead {
                every: l.every,
                decay: l.decay,
                power: l.power,
                total_steps,
            })
    }

    /// The optimiser the spec describes for `steps_per_epoch` steps an epoch.
    pub fn optimizer_for(
        &self,
        steps_per_epoch: u64,
    ) -> Result<strata_optim::Optimizer<f32>, String> {
        let mut opt = strata_optim::Optimizer::new(
            self.method()?,
            self.optimizer.weight_decay,
            self.schedule_for(steps_per_epoch),
        )
        .map_err(|e| e.to_string())?
        .with_groups(self.groups())
        .map_err(|e| e.to_string())?;
        if let Some(l) = self.lookahead(steps_per_epoch * self.train.epochs as u64) {
            opt = opt.with_lookahead(l).map_err(|e| e.to_string())?;
        }
        Ok(opt)
    }

    /// The schedule with a nominal epoch length (for validation and display).
    pub fn schedule(&self) -> Schedule {
        self.schedule_for(1)
    }
}

/// Sets `a.b.c = value` in a TOML table; `value` is TOML (a bare word that is
/// not valid TOML is taken as a string).
pub fn apply_override(doc: &mut toml::Table, assignment: &str) -> Result<(), String> {
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {assignment:?}"))?;
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {}", value.trim())) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(value.trim().to_string()),
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    let (last, parents) = parts.split_last().ok_or("empty key")?;
    let mut table = doc;
    for p in parents {
        table = table
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| format!("{p} is not a table"))?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}

fn parse_layer(v: &toml::Value) -> Result<LayerSpec, String> {
    use toml::Value;
    let unknown = |k: &str| format!("unknown layer kind {k:?}; expected one of {LAYER_KINDS}");
    match v {
        Value::String(s) => match s.as_str() {
            "relu" => Ok(LayerSpec::Relu),
            "flatten" => Ok(LayerSpec::Flatten),
            "global-avgpool" | "avgpool" => Ok(LayerSpec::GlobalAvgPool),
            "batchnorm" => Ok(LayerSpec::BatchNorm {
                scale: true,
                momentum: 0.1,
                eps: 1e-5,
            }),
            "gelu" => Ok(LayerSpec::Gelu),
            k => Err(unknown(k)),
        },
        Value::Table(t) if t.len() == 1 => {
            let (k, arg) = t.iter().next().expect("one entry");
            match k.as_str() {
                "linear" => {
                    let (out, bias) = match arg {
                        Value::Table(_) => {
                            let a = table(arg, "linear", &["out", "bias"])?;
                            (a.get("out").cloned().ok_or("linear needs out = <units>")?, flag(a.get("bias"), true, "linear: bias")?)
                        }
                        other => (other.clone(), true),
                    };
                    Ok(LayerSpec::Linear { out: positive(&out, "linear: the number of units")?, bias })
                }
                "gelu" => Ok(LayerSpec::Gelu),
                "scale" => {
                    let factor = number(arg, "scale: the factor")?;
                    if !(factor.is_finite() && factor != 0.0) {
                        return Err(format!("scale: the factor must be a finite non-zero number, got {factor}"));
                    }
                    Ok(LayerSpec::Scale { factor })
                }
                "whiten" => parse_whiten(arg),
                "dropout" => {
                    let p = match arg {
                        Value::Float(f) => *f,
                        Value::Integer(i) => *i as f64,
                        Value::Table(a) => a.get("p").and_then(Value::as_float).ok_or("dropout needs p = <probability>")?,
                        _ => return Err("dropout takes a probability in [0, 1)".into()),
                    };
                    if !(0.0..1.0).contains(&p) {
                        return Err(format!("dropout probability must lie in [0, 1), got {p}"));
                    }
                    Ok(LayerSpec::Dropout { p })
                }
                "relu" => Ok(LayerSpec::Relu),
                "flatten" => Ok(LayerSpec::Flatten),
                "batchnorm" => {
                    let t = table(arg, "batchnorm", &["scale", "momentum", "eps"])?;
                    let momentum = t.get("momentum").map_or(Ok(0.1), |v| number(v, "batchnorm: momentum"))?;
                    if !(momentum > 0.0 && momentum <= 1.0) {
                        return Err(format!("batchnorm: momentum (the newest minibatch's weight in the running estimates) must lie in (0, 1], got {momentum}"));
                    }
                    let eps = t.get("eps").map_or(Ok(1e-5), |v| number(v, "batchnorm: eps"))?;
                    if !(eps.is_finite() && eps > 0.0) {
                        return Err(format!("batchnorm: eps must be a small positive number, got {eps}"));
                    }
                    Ok(LayerSpec::BatchNorm { scale: flag(t.get("scale"), true, "batchnorm: scale")?, momentum, eps })
                }
                "conv" => parse_conv(arg),
                "maxpool" => parse_pool(arg),
                "residual" => Ok(LayerSpec::Residual(parse_residual(table(arg, "residual", RESIDUAL_KEYS)?, "residual")?)),
                "stage" => {
                    let t = table(arg, "stage", &[RESIDUAL_KEYS, &["blocks"]].concat())?;
                    let blocks = positive(t.get("blocks").unwrap_or(&Value::Integer(0)), "stage: blocks")?;
                    Ok(LayerSpec::Stage { blocks, block: parse_residual(t, "stage")? })
                }
                "resnet" => {
                    let t = table(arg, "resnet", &["depth", "kind", "width", "bottleneck"])?;
                    Ok(LayerSpec::ResNet {
                        depth: positive(t.get("depth").unwrap_or(&Value::Integer(0)), "resnet: depth")?,
                        kind: residual_kind(t.get("kind"))?,
                        width: match t.get("width") {
                            None => 16,
                            Some(w) => positive(w, "resnet: width")?,
                        },
                        bottleneck: flag(t.get("bottleneck"), false, "resnet: bottleneck")?,
                    })
                }
                k => Err(unknown(k)),
            }
        }
        _ => Err(format!("a layer is a name such as \"relu\" or a table with one key such as {{ linear = 10 }}; got {v}")),
    }
}

fn positive(v: &toml::Value, what: &str) -> Result<usize, String> {
    match v.as_integer() {
        Some(i) if i > 0 => Ok(i as usize),
        Some(i) => Err(format!("{what} must be a positive integer, got {i}")),
        None => Err(format!("{what} must be a positive integer, got {v}")),
    }
}

const RESIDUAL_KEYS: &[&str] = &["out", "stride", "kind", "batchnorm"];

fn table<'a>(v: &'a toml::Value, what: &str, keys: &[&str]) -> Result<&'a toml::Table, String> {
    let t = v
        .as_table()
        .ok_or_else(|| format!("{what} takes a table of settings, e.g. {{ out = 32 }}"))?;
    if let Some(k) = t.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(format!(
            "{what} has no setting {k:?}; expected one of {keys:?}"
        ));
    }
    Ok(t)
}

fn flag(v: Option<&toml::Value>, default: bool, what: &str) -> Result<bool, String> {
    match v {
        None => Ok(default),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(other) => Err(format!("{what} is true or false, got {other}")),
    }
}

fn opt_positive(v: Option<&toml::Value>, default: usize, what: &str) -> Result<usize, String> {
    v.map_or(Ok(default), |v| positive(v, what))
}

fn residual_kind(v: Option<&toml::Value>) -> Result<strata_nn::ResidualKind, String> {
    match v.map(|v| v.as_str()) {
        None | Some(Some("original")) => Ok(strata_nn::ResidualKind::Original),
        Some(Some("pre-activation")) | Some(Some("preact")) => {
            Ok(strata_nn::ResidualKind::PreActivation)
        }
        _ => Err("kind is \"original\" or \"pre-activation\"".into()),
    }
}

fn parse_residual(t: &toml::Table, what: &str) -> Result<ResidualSpec, String> {
    Ok(ResidualSpec {
        out: positive(
            t.get("out").ok_or(format!("{what} needs out = <width>"))?,
            &format!("{what}: out"),
        )?,
        stride: opt_positive(t.get("stride"), 1, &format!("{what}: stride"))?,
        kind: residual_kind(t.get("kind"))?,
        batchnorm: flag(t.get("batchnorm"), true, &format!("{what}: batchnorm"))?,
    })
}

fn parse_conv(arg: &toml::Value) -> Result<LayerSpec, String> {
    use toml::Value;
    let t = table(
        arg,
        "conv",
        &["out", "kernel", "stride", "pad", "border", "bias", "init"],
    )?;
    let dirac = match t.get("init") {
        None => false,
        Some(Value::String(s)) if s == "dirac" => true,
        Some(Value::String(s)) if s == "random" => false,
        Some(other) => {
            return Err(format!(
                "conv: init is \"random\" (the model's law) or \"dirac\" (identity kernels first), got {other}"
            ))
        }
    };
    let pad = match t.get("pad") {
        None => PadSpec::Valid,
        Some(Value::String(s)) if s == "same" => PadSpec::Same,
        Some(Value::String(s)) if s == "valid" => PadSpec::Valid,
        Some(Value::Integer(i)) if *i >= 0 => PadSpec::Uniform(*i as usize),
        Some(other) => {
            return Err(format!(
                "conv: pad is \"same\", \"valid\" or a non-negative integer, got {other}"
            ))
        }
    };
    let border = match t.get("border") {
        None => strata_nn::Border::Zero,
        Some(Value::String(s)) => match s.as_str() {
            "zero" => strata_nn::Border::Zero,
            "reflect" => strata_nn::Border::Reflect,
            "replicate" => strata_nn::Border::Replicate,
            other => {
                return Err(format!(
                    "conv: border {other:?} is not zero, reflect, replicate or {{ constant = v }}"
                ))
            }
        },
        Some(Value::Table(c)) => match c.get("constant") {
            Some(Value::Float(f)) => strata_nn::Border::Constant(*f),
            Some(Value::Integer(i)) => strata_nn::Border::Constant(*i as f64),
            _ => return Err("conv: border table is { constant = <value> }".into()),
        },
        Some(other) => {
            return Err(format!(
                "conv: border {other} is not zero, reflect, replicate or {{ constant = v }}"
            ))
        }
    };
    Ok(LayerSpec::Conv {
        out: positive(
            t.get("out").ok_or("conv needs out = <number of kernels>")?,
            "conv: out",
        )?,
        kernel: positive(
            t.get("kernel").ok_or("conv needs kernel = <side>")?,
            "conv: kernel",
        )?,
        stride: opt_positive(t.get("stride"), 1, "conv: stride")?,
        pad,
        border,
        bias: flag(t.get("bias"), true, "conv: bias")?,
        dirac,
    })
}

/// A number (integer or float) of a layer setting.
fn number(v: &toml::Value, what: &str) -> Result<f64, String> {
    match v {
        toml::Value::Float(f) => Ok(*f),
        toml::Value::Integer(i) => Ok(*i as f64),
        other => Err(format!("{what} must be a number, got {other}")),
    }
}

fn parse_whiten(arg: &toml::Value) -> Result<LayerSpec, String> {
    let t = table(arg, "whiten", &["kernel", "eps", "images", "bias_epochs"])?;
    let eps = t
        .get("eps")
        .map_or(Ok(5e-4), |v| number(v, "whiten: eps"))?;
    if !(eps.is_finite() && eps > 0.0) {
        return Err(format!(
            "whiten: eps must be a small positive number, got {eps}"
        ));
    }
    let kernel = opt_positive(t.get("kernel"), 2, "whiten: kernel")?;
    if kernel > 8 {
        return Err(format!(
            "whiten: kernel must be at most 8 (2·C·k² filters), got {kernel}"
        ));
    }
    Ok(LayerSpec::Whiten {
        kernel,
        eps,
        images: opt_positive(t.get("images"), 5000, "whiten: images")?,
        bias_epochs: t
            .get("bias_epochs")
            .map(|v| positive(v, "whiten: bias_epochs"))
            .transpose()?,
    })
}

fn parse_pool(arg: &toml::Value) -> Result<LayerSpec, String> {
    if arg.is_integer() {
        let size = positive(arg, "maxpool: size")?;
        return Ok(LayerSpec::MaxPool {
            size,
            stride: size,
            ceil: false,
        });
    }
    let t = table(arg, "maxpool", &["size", "stride", "odd"])?;
    let size = positive(
        t.get("size").ok_or("maxpool needs size = <window side>")?,
        "maxpool: size",
    )?;
    let ceil = match t.get("odd").map(|v| v.as_str()) {
        None | Some(Some("floor")) => false,
        Some(Some("ceil")) => true,
        _ => {
            return Err(
                "maxpool: odd is \"floor\" (drop the odd row/column) or \"ceil\" (impute it)"
                    .into(),
            )
        }
    };
    Ok(LayerSpec::MaxPool {
        size,
        stride: opt_positive(t.get("stride"), size, "maxpool: stride")?,
        ceil,
    })
}
