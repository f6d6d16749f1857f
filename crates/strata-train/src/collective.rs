//! The one seam of data-parallel training: what the training loop needs from
//! a group of processes (its rank and size, a sum over all of them of a flat
//! buffer, a broadcast of bytes from rank 0), and the fused buffer that
//! carries one step's gradients through a single sum.
//!
//! Nothing here knows about MPI: [`Solo`] is the one-process group, and the
//! `strata-dist` crate implements [`Collective`] over MPI. The training loop
//! ([`crate::fit`]) sees gradients and parameters as flat `f32` slices.
//!
//! Data parallelism as strata does it: minibatch `b` of `m` items is planned
//! as in one process, and rank `r` of `N` computes the loss and gradient of
//! its share `⌊m·r/N⌋ .. ⌊m·(r+1)/N⌋` of `n_r` items. The minibatch's
//! gradient, the mean over all `m` items, is `Σ_r (n_r/m)·g_r`, so each rank
//! scales its gradient by `n_r/m` and one all-reduce sums them; every rank
//! then takes the same optimiser step and the weights stay identical.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use strata_autograd::ops::batchnorm::BatchSum;
use strata_autograd::ParamId;
use strata_nn::Module;
use strata_tensor::Tensor;

/// A group of processes training one model (see the module docs).
pub trait Collective: Debug + Send + Sync {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Replaces `buf` on every rank by the element-wise sum of every rank's
    /// `buf` (all ranks pass the same length). The same inputs give the same
    /// sum, bit for bit, run after run.
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<(), String>;
    /// As [`Collective::all_reduce_f32`], in f64 (counts, evaluation sums).
    fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<(), String>;
    /// Replaces `bytes` on every rank by rank 0's `bytes`.
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<(), String>;
    /// Seconds this process has spent in collective calls so far, waiting
    /// for the others included (0 where it is not measured).
    fn busy_seconds(&self) -> f64 {
        0.0
    }
}

/// One process alone: rank 0 of 1; the sums and the broadcast change nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_f32(&self, _buf: &mut [f32]) -> Result<(), String> {
        Ok(())
    }
    fn all_reduce_f64(&self, _buf: &mut [f64]) -> Result<(), String> {
        Ok(())
    }
    fn broadcast_bytes(&self, _bytes: &mut Vec<u8>) -> Result<(), String> {
        Ok(())
    }
}

/// A shared handle on a group, as the options of [`crate::fit`] and
/// [`crate::run::train`] hold it (`None` there means [`Solo`]).
pub type Group = Arc<dyn Collective>;

/// The rank and size of an optional group (`None`: rank 0 of 1).
pub fn rank_size(group: Option<&Group>) -> (usize, usize) {
    group.map_or((0, 1), |g| (g.rank(), g.size()))
}

/// A group as the sum synchronised batch norm calls (its f64 all-reduce).
#[derive(Clone, Debug)]
pub struct GroupSum(pub Group);

impl BatchSum for GroupSum {
    fn sum(&self, values: &mut [f64]) -> Result<(), String> {
        self.0.all_reduce_f64(values)
    }
}

/// Where each trainable parameter's gradient, each buffer and a few extra
/// numbers sit in one flat `f32` buffer, so that one all-reduce carries a
/// whole step (gradients, batch-norm running statistics, the loss, the count
/// of right answers, a stop flag) instead of one call per tensor.
///
/// Layout: for every trainable parameter, in [`Module::params`] order, its
/// gradient followed by one presence flag (1 if this rank has a gradient for
/// it: a parameter no rank reached stays without one, as in one process);
/// then every buffer ([`Module::buffers`] order); then the extras.
#[derive(Clone, Debug)]
pub struct GradientBucket {
    params: Vec<(ParamId, Vec<usize>, usize)>,
    buffers: Vec<(usize, usize)>,
    extras: usize,
    len: usize,
}

impl GradientBucket {
    /// The layout for `model`'s trainable parameters and buffers, plus
    /// `extras` numbers at the end.
    pub fn new(model: &dyn Module<f32>, extras: usize) -> Self {
        let mut off = 0;
        let mut params = Vec::new();
        for (_, p) in model.params() {
            if p.frozen {
                continue;
            }
            params.push((p.id(), p.value.shape().to_vec(), off));
            off += p.value.numel() + 1;
        }
        let mut buffers = Vec::new();
        for (_, b) in model.buffers() {
            buffers.push((off, b.numel()));
            off += b.numel();
        }
        Self {
            params,
            buffers,
            extras: off,
            len: off + extras,
        }
    }

    /// Length of the flat buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty (no parameters, buffers or extras).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `out` (resized to [`GradientBucket::len`]) with `weight` times
    /// each gradient `grad(id)` (zeros and flag 0 where there is none),
    /// `weight` times each buffer of `model`, and `extras` as they are.
    pub fn pack<'g>(
        &self,
        out: &mut Vec<f32>,
        grad: impl Fn(ParamId) -> Option<&'g Tensor<f32>>,
        model: &dyn Module<f32>,
        weight: f32,
        extras: &[f32],
    ) -> Result<(), String> {
        out.clear();
        out.resize(self.len, 0.0);
        for (id, shape, off) in &self.params {
            let n: usize = shape.iter().product();
            if let Some(g) = grad(*id) {
                if g.shape() != shape.as_slice() {
                    return Err(format!(
                        "gradient of shape {:?} for a parameter of shape {shape:?}",
                        g.shape()
                    ));
                }
                let dst = &mut out[*off..off + n];
                for (d, s) in dst.iter_mut().zip(g.to_contiguous_slice().iter()) {
                    *d = weight * s;
                }
                out[off + n] = 1.0;
            }
        }
        let buffers = model.buffers();
        if buffers.len() != self.buffers.len() {
            return Err(format!(
                "the model has {} buffers, the bucket was laid out for {}",
                buffers.len(),
                self.buffers.len()
            ));
        }
        for ((_, b), &(off, n)) in buffers.iter().zip(&self.buffers) {
            if b.numel() != n {
                return Err(format!(
                    "a buffer of {} values where {n} were laid out",
                    b.numel()
                ));
            }
            for (d, s) in out[off..off + n]
                .iter_mut()
                .zip(b.to_contiguous_slice().iter())
            {
                *d = weight * s;
            }
        }
        if extras.len() != self.len - self.extras {
            return Err(format!(
                "{} extras where {} were laid out",
                extras.len(),
                self.len - self.extras
            ));
        }
        out[self.extras..].copy_from_slice(extras);
        Ok(())
    }

    /// The gradients held in `buf`, by parameter; a parameter whose flags
    /// summed to 0 (no rank had a gradient for it) is absent.
    pub fn gradients(&self, buf: &[f32]) -> HashMap<ParamId, Tensor<f32>> {
        let mut out = HashMap::with_capacity(self.params.len());
        for (id, shape, off) in &self.params {
            let n: usize = shape.iter().product();
            if buf[off + n] == 0.0 {
                continue;
            }
            if let Ok(t) = Tensor::from_vec(buf[*off..off + n].to_vec(), shape) {
                out.insert(*id, t);
            }
        }
        out
    }

    /// Writes the buffers held in `buf` into `model`'s buffers.
    pub fn write_buffers(&self, buf: &[f32], model: &mut dyn Module<f32>) {
        for ((_, b), &(off, n)) in model.buffers_mut().into_iter().zip(&self.buffers) {
            if b.numel() == n {
                if let Ok(t) = Tensor::from_vec(buf[off..off + n].to_vec(), b.shape()) {
                    *b = t;
                }
            }
        }
    }

    /// The extras held in `buf`.
    pub fn extras<'b>(&self, buf: &'b [f32]) -> &'b [f32] {
        &buf[self.extras..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use strata_nn::{BatchNorm, Flatten, Linear, Sequential};

    fn net() -> Sequential<f32> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
        let mut net = Sequential::new();
        net.push(Flatten)
            .push(Linear::new(12, 5, &mut rng).unwrap())
            .push(BatchNorm::new(5).unwrap())
            .push(Linear::new(5, 3, &mut rng).unwrap());
        net
    }

    #[test]
    fn bucketing_round_trips_every_parameter_exactly() {
        let mut model = net();
        // Freeze one parameter: it takes no slot.
        model.params_mut()[1].1.frozen = true;
        let bucket = GradientBucket::new(&model, 3);
        let trainable: Vec<_> = model
            .params()
            .into_iter()
            .filter(|(_, p)| !p.frozen)
            .collect();
        let numel: usize = trainable.iter().map(|(_, p)| p.value.numel() + 1).sum();
        let buffers: usize = model.buffers().iter().map(|(_, b)| b.numel()).sum();
        assert_eq!(bucket.len(), numel + buffers + 3);
        // Gradients: distinct values per parameter; the last has none.
        let grads: HashMap<ParamId, Tensor<f32>> = trainable
            .iter()
            .enumerate()
            .take(trainable.len() - 1)
            .map(|(k, (_, p))| {
                let v = (0..p.value.numel())
                    .map(|i| (k * 1000 + i) as f32 * 0.37 - 11.0)
                    .collect();
                (p.id(), Tensor::from_vec(v, p.value.shape()).unwrap())
            })
            .collect();
        let mut buf = Vec::new();
        bucket
            .pack(&mut buf, |id| grads.get(&id), &model, 1.0, &[4.0, 5.0, 6.0])
            .unwrap();
        let back = bucket.gradients(&buf);
        assert_eq!(back.len(), grads.len());
        for (id, g) in &grads {
            assert_eq!(back[id].to_vec(), g.to_vec());
            assert_eq!(back[id].shape(), g.shape());
        }
        assert_eq!(bucket.extras(&buf), &[4.0, 5.0, 6.0]);
        // Buffers round-trip too.
        let before: Vec<Vec<f32>> = model.buffers().iter().map(|(_, b)| b.to_vec()).collect();
        let mut other = net();
        bucket.write_buffers(&buf, &mut other);
        let after: Vec<Vec<f32>> = other.buffers().iter().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(before, after);
        // Wrong extras are refused, not truncated.
        assert!(bucket
            .pack(&mut buf, |id| grads.get(&id), &model, 1.0, &[1.0])
            .is_err());
    }

    #[test]
    fn weighted_halves_sum_to_the_whole() {
        // Two ranks with weights 1/2 each: the sum of their packed buffers
        // is the mean, exactly for values that halve exactly.
        let model = net();
        let bucket = GradientBucket::new(&model, 1);
        let (_, p) = &model.params()[0];
        let g = Tensor::from_vec(vec![3.0f32; p.value.numel()], p.value.shape()).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        bucket
            .pack(
                &mut a,
                |id| (id == p.id()).then_some(&g),
                &model,
                0.5,
                &[1.0],
            )
            .unwrap();
        bucket
            .pack(
                &mut b,
                |id| (id == p.id()).then_some(&g),
                &model,
                0.5,
                &[0.0],
            )
            .unwrap();
        let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let grads = bucket.gradients(&sum);
        assert_eq!(grads.len(), 1);
        assert!(grads[&p.id()].to_vec().iter().all(|&v| v == 3.0));
        assert_eq!(bucket.extras(&sum), &[1.0]);
    }
}
