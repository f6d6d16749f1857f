//! The training loop and held-out evaluation.

use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::Arc;
use std::time::Instant;
use strata_autograd::kernels::reduce::argmax_rows;
use strata_autograd::Tape;
use strata_data::{multi_crop, Augmentation, Batcher, DataError, Dataset};
use strata_nn::{Ctx, DeadUnits, Mode, Module, NnError};
use strata_optim::{OptimError, Optimizer};
use strata_tensor::Tensor;
use thiserror::Error;

use crate::collective::{rank_size, GradientBucket, Group, GroupSum};
use strata_autograd::ops::batchnorm::BatchSum;

/// Why training stopped early.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The loss became NaN or infinite.
    #[error(
        "the loss became {loss} at step {step} (epoch {epoch}); training diverged — \
         try a smaller learning rate"
    )]
    Diverged {
        /// Global step (0-based) whose loss was not finite.
        step: u64,
        /// Epoch (1-based).
        epoch: usize,
        /// The loss value.
        loss: f64,
    },
    /// A layer failed (shape mismatch, bad label, …).
    #[error(transparent)]
    Model(#[from] NnError),
    /// The optimiser failed.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// The data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// An observer asked to stop (e.g. a checkpoint could not be written).
    #[error("{0}")]
    Observer(String),
    /// An impossible setting.
    #[error("{0}")]
    Config(String),
    /// The group of processes failed (a rank was lost, a sum failed).
    #[error("data-parallel training: {0}")]
    Collective(String),
    /// The observer asked to stop ([`Observer::stop_requested`], e.g. Ctrl-C).
    #[error("interrupted in epoch {epoch} after step {done}/{steps}")]
    Interrupted {
        /// Epoch (1-based) that was cut short.
        epoch: usize,
        /// Steps of it that ran.
        done: usize,
        /// Steps it has.
        steps: usize,
    },
}

/// Settings of [`fit`].
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Passes over the training data.
    pub epochs: usize,
    /// Minibatch size.
    pub batch: usize,
    /// Seed of shuffling and dropout.
    pub seed: u64,
    /// Augmentation of training minibatches (on the prefetch thread).
    pub augment: Option<Augmentation>,
    /// How validation images are evaluated (e.g. the augmentation's centre crop).
    pub eval: EvalOptions,
    /// Label smoothing `ε` of the training loss (targets `(1 − ε)·onehot + ε/C`;
    /// 0: the plain cross-entropy).
    pub label_smoothing: f64,
    /// The processes this training is split over (data-parallel, see
    /// [`crate::collective`]); `None`: this process alone.
    pub group: Option<Group>,
    /// Under a group of more than one process, batch norm normalises by the
    /// statistics of the whole minibatch, added over the processes
    /// (synchronised batch norm), instead of by each process's share (the
    /// default, as PyTorch's DistributedDataParallel). Alone it changes
    /// nothing.
    pub sync_batchnorm: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch: 128,
            seed: 1,
            augment: None,
            eval: EvalOptions::default(),
            label_smoothing: 0.0,
            group: None,
            sync_batchnorm: false,
        }
    }
}

/// How held-out images are evaluated.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Items per minibatch.
    pub batch: usize,
    /// A deterministic transform applied first (e.g. a centre crop).
    pub transform: Option<Augmentation>,
    /// Average the class probabilities over the views (centre and corners)
    /// of this `[height, width]` instead of one prediction.
    pub multi_crop: Option<[usize; 2]>,
    /// Also average over the mirror images of those views.
    pub mirror: bool,
    /// airbench's test-time views ([`strata_data::translate_views`]) with
    /// this shift, their logits averaged with the views' weights (instead
    /// of `multi_crop`).
    pub tta: Option<usize>,
    /// The processes the evaluation is split over: each evaluates a
    /// contiguous share of the items and the counts are summed; `None`:
    /// this process alone.
    pub group: Option<Group>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            transform: None,
            multi_crop: None,
            mirror: true,
            tta: None,
            group: None,
        }
    }
}

/// One training step, as reported to an [`Observer`].
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Global step count after this step.
    pub step: u64,
    /// Index of the step within its epoch, from 0.
    pub step_in_epoch: usize,
    /// Steps in this epoch.
    pub steps_in_epoch: usize,
    /// The minibatch loss.
    pub loss: f64,
    /// The learning rate used.
    pub lr: f64,
    /// Items in the minibatch.
    pub batch: usize,
}

/// Watches training: progress after each step, and each finished epoch with
/// the model and optimiser (to write checkpoints and logs).
pub trait Observer {
    /// Called after every optimiser step.
    fn on_step(&mut self, _info: &StepInfo) {}
    /// A message for the user (a warning, a note about files written).
    fn on_message(&mut self, _message: &str) {}
    /// Polled after every step: `true` stops training there, with
    /// [`TrainError::Interrupted`] (finished epochs keep their reports,
    /// logs and checkpoints).
    fn stop_requested(&self) -> bool {
        false
    }
    /// Called after every epoch; an `Err` stops training with that message.
    fn on_epoch(
        &mut self,
        _report: &EpochReport,
        _model: &dyn Module<f32>,
        _opt: &Optimizer<f32>,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// Observes nothing.
impl Observer for () {}

/// An observer that calls a closure with each epoch's report.
pub struct OnEpoch<F>(pub F);

impl<F: FnMut(&EpochReport)> Observer for OnEpoch<F> {
    fn on_epoch(
        &mut self,
        report: &EpochReport,
        _: &dyn Module<f32>,
        _: &Optimizer<f32>,
    ) -> Result<(), String> {
        (self.0)(report);
        Ok(())
    }
}

/// The dropout random source of `epoch`: derived from the seed and the epoch
/// alone, so a run resumed at an epoch boundary draws the same masks as an
/// uninterrupted one.
fn epoch_rng(seed: u64, epoch: usize) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(
        seed ^ 0x5eed_0000_0000 ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    )
}

/// What one epoch of training did.
#[derive(Clone, Debug)]
pub struct EpochReport {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Global step count at the end of the epoch.
    pub step: u64,
    /// Mean minibatch loss over the epoch.
    pub loss: f64,
    /// Loss of every minibatch, in order (for loss-against-step plots).
    pub step_losses: Vec<f64>,
    /// Learning rate used in the epoch's last step.
    pub lr: f64,
    /// Accuracy on the training minibatches as they were trained on.
    pub train_accuracy: f64,
    /// Accuracy on the validation data, if given.
    pub validation_accuracy: Option<f64>,
    /// Fraction of dead ReLU units per layer over the epoch's training items.
    pub dead_units: Vec<(String, f64)>,
    /// Seconds spent in this epoch's training steps.
    pub seconds: f64,
    /// Training throughput.
    pub samples_per_second: f64,
}

/// Trains `model` on `train` for `opts.epochs` epochs, telling `observer`
/// about every step and epoch, and returns every epoch's report.
pub fn fit(
    model: &mut dyn Module<f32>,
    opt: &mut Optimizer<f32>,
    train: &Dataset,
    validation: Option<&Dataset>,
    opts: &FitOptions,
    observer: impl Observer,
) -> Result<Vec<EpochReport>, TrainError> {
    fit_from(model, opt, train, validation, opts, 0, observer)
}

/// Every rank's record of which units were ever active this epoch, added up,
/// so the dead-unit fractions are those of all the epoch's images. When the
/// ranks' records differ in shape (a rank saw no image), each keeps its own:
/// `n·Σ l² = (Σ l)²` holds exactly when every rank's length `l` is the same,
/// so every rank takes the same branch.
fn merge_dead_units(group: &Group, monitor: &mut DeadUnits) -> Result<(), TrainError> {
    let mut mask = monitor.alive_mask();
    let l = mask.len() as f64;
    let mut lengths = [l, l * l];
    group
        .all_reduce_f64(&mut lengths)
        .map_err(TrainError::Collective)?;
    if group.size() as f64 * lengths[1] != lengths[0] * lengths[0] {
        return Ok(());
    }
    group
        .all_reduce_f64(&mut mask)
        .map_err(TrainError::Collective)?;
    monitor.set_alive_mask(&mask);
    Ok(())
}

/// As [`fit`], starting at epoch `first_epoch` (0-based): continues a run
/// whose model and optimiser were restored from the checkpoint written after
/// epoch `first_epoch`. The result is bit-identical to an uninterrupted run.
pub fn fit_from(
    model: &mut dyn Module<f32>,
    opt: &mut Optimizer<f32>,
    train: &Dataset,
    validation: Option<&Dataset>,
    opts: &FitOptions,
    first_epoch: usize,
    mut observer: impl Observer,
) -> Result<Vec<EpochReport>, TrainError> {
    if train.is_empty() {
        return Err(TrainError::Config("the training set is empty".into()));
    }
    let (rank, ranks) = rank_size(opts.group.as_ref());
    let mut batcher = Batcher::new(opts.batch)?.shuffle(opts.seed);
    if let Some(a) = &opts.augment {
        batcher = batcher.augment(a.clone());
    }
    let image = batcher.check(train)?;
    model.output_shape(&image)?;
    if ranks > 1 {
        batcher = batcher.shard(rank, ranks)?;
    }
    // Synchronised batch norm sums inside every rank's forward and backward
    // pass, so a rank may not sit a minibatch out.
    let batch_sum = match &opts.group {
        Some(g) if ranks > 1 && opts.sync_batchnorm => {
            let last = train.len() % opts.batch;
            if last != 0 && last < ranks {
                return Err(TrainError::Config(format!(
                    "synchronised batch norm needs an image for every one of the {ranks} \
                     ranks in each minibatch, but the last minibatch of each epoch holds \
                     {last} ({} training images, train.batch = {}): change train.batch",
                    train.len(),
                    opts.batch
                )));
            }
            Some(Arc::new(GroupSum(Arc::clone(g))) as Arc<dyn BatchSum>)
        }
        _ => None,
    };
    // Extras of the fused step buffer: the loss, the right answers, the
    // ranks asking to stop.
    let bucket = GradientBucket::new(model, 3);
    let mut fused = Vec::new();
    let data = Arc::new(train.clone());
    let mut history = Vec::with_capacity(opts.epochs);
    for epoch in first_epoch..opts.epochs {
        let mut rng = epoch_rng(opts.seed, epoch);
        let start = Instant::now();
        let mut monitor = DeadUnits::new();
        let (mut losses, mut right, mut seen, mut lr) = (Vec::new(), 0usize, 0usize, 0.0);
        let batches = batcher.prefetch(Arc::clone(&data), epoch as u64, 2);
        let steps_in_epoch = batches.len();
        for (step_in_epoch, batch) in batches.enumerate() {
            // The whole minibatch's size and this rank's first position in it.
            let m = opts.batch.min(train.len() - step_in_epoch * opts.batch);
            let first = Batcher::share(m, rank, ranks).start;
            let n = batch.labels.len();
            let mut tape = Tape::new();
            let (mut l, mut r) = (0.0, 0usize);
            let mut local = None;
            if n > 0 {
                let x = tape.input(batch.images);
                // Dropout masks are functions of (seed, epoch, step, position).
                let step_seed =
                    epoch_rng(opts.seed ^ ((step_in_epoch as u64) << 32), epoch).next_u64();
                let mut ctx = Ctx::new(Mode::Train, &mut rng)
                    .with_monitor(&mut monitor)
                    .with_item_streams(step_seed, first as u64);
                ctx.batch_sum = batch_sum.clone();
                let logits = model.forward(&mut tape, x, &mut ctx)?;
                let loss = tape
                    .softmax_cross_entropy_smoothed(logits, &batch.labels, opts.label_smoothing)
                    .map_err(NnError::from)?;
                l = tape.value(loss).map_err(NnError::from)?.to_vec()[0] as f64;
                if ranks == 1 && !l.is_finite() {
                    return Err(TrainError::Diverged {
                        step: opt.steps(),
                        epoch: epoch + 1,
                        loss: l,
                    });
                }
                let out = tape.value(logits).map_err(NnError::from)?;
                let classes = out.shape()[1];
                let pred = argmax_rows(&out.to_contiguous_slice(), n, classes);
                r = pred
                    .iter()
                    .zip(&batch.labels)
                    .filter(|(p, y)| p == y)
                    .count();
                local = Some(tape.backward(loss).map_err(NnError::from)?);
            }
            // The tape holds views of the weights: drop it so the update
            // writes in place instead of copying every weight tensor.
            drop(tape);
            let stop = if ranks == 1 {
                lr = match &local {
                    Some(g) => opt.step(model.params_mut(), |p| g.param(p.id()).cloned(), epoch)?,
                    None => opt.lr(epoch),
                };
                right += r;
                // Polled after `on_step`, below, as before groups existed.
                None
            } else {
                // One sum carries the step: Σ_r (n_r/m)·g_r is the minibatch
                // gradient; the running statistics are averaged the same way.
                let w = n as f32 / m as f32;
                let extras = [
                    w * l as f32,
                    r as f32,
                    f32::from(u8::from(observer.stop_requested())),
                ];
                bucket
                    .pack(
                        &mut fused,
                        |id| local.as_ref().and_then(|g| g.param(id)),
                        model,
                        w,
                        &extras,
                    )
                    .map_err(TrainError::Config)?;
                opts.group
                    .as_ref()
                    .map_or(Ok(()), |g| g.all_reduce_f32(&mut fused))
                    .map_err(TrainError::Collective)?;
                let e = bucket.extras(&fused);
                let (sum_l, sum_r, stops) = (e[0] as f64, e[1] as usize, e[2]);
                l = sum_l;
                if !l.is_finite() {
                    return Err(TrainError::Diverged {
                        step: opt.steps(),
                        epoch: epoch + 1,
                        loss: l,
                    });
                }
                right += sum_r;
                bucket.write_buffers(&fused, model);
                let grads = bucket.gradients(&fused);
                lr = opt.step(model.params_mut(), |p| grads.get(&p.id()).cloned(), epoch)?;
                // Polled before the sum, so every rank learns of it in this step.
                Some(stops > 0.0)
            };
            if opt.lookahead().is_some() {
                lookahead(opt, model, false)?;
            }
            seen += m;
            losses.push(l);
            observer.on_step(&StepInfo {
                epoch: epoch + 1,
                step: opt.steps(),
                step_in_epoch,
                steps_in_epoch,
                loss: l,
                lr,
                batch: m,
            });
            if stop.unwrap_or_else(|| observer.stop_requested()) {
                return Err(TrainError::Interrupted {
                    epoch: epoch + 1,
                    done: step_in_epoch + 1,
                    steps: steps_in_epoch,
                });
            }
        }
        if epoch + 1 == opts.epochs && opt.lookahead().is_some() {
            // The run ends on the slow weights (look-ahead's last update).
            lookahead(opt, model, true)?;
        }
        if let Some(g) = opts.group.as_ref().filter(|_| ranks > 1) {
            merge_dead_units(g, &mut monitor)?;
        }
        let seconds = start.elapsed().as_secs_f64();
        let eval = EvalOptions {
            group: opts.eval.group.clone().or_else(|| opts.group.clone()),
            ..opts.eval.clone()
        };
        let validation_accuracy = match validation {
            Some(v) => Some(evaluate_with(model, v, &eval)?.accuracy),
            None => None,
        };
        let report = EpochReport {
            epoch: epoch + 1,
            step: opt.steps(),
            loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
            step_losses: losses,
            lr,
            train_accuracy: right as f64 / seen.max(1) as f64,
            validation_accuracy,
            dead_units: monitor.fractions(),
            seconds,
            samples_per_second: seen as f64 / seconds.max(1e-9),
        };
        observer
            .on_epoch(&report, model, opt)
            .map_err(TrainError::Observer)?;
        history.push(report);
    }
    Ok(history)
}

/// Look-ahead's synchronisation of the trained parameters and the buffers
/// (batch norm's running statistics) of `model`; `finish` after the last step.
fn lookahead(
    opt: &mut Optimizer<f32>,
    model: &mut dyn Module<f32>,
    finish: bool,
) -> Result<(), TrainError> {
    let params = model.params_mut().into_iter();
    let trained = params
        .filter(|(_, p)| !p.frozen)
        .map(|(n, p)| (n, &mut p.value));
    opt.lookahead_sync(trained, finish)?;
    opt.lookahead_sync(model.buffers_mut(), finish)?;
    Ok(())
}

/// Held-out evaluation: accuracy and the confusion matrix.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

/// Evaluates `model` on `data` in evaluation mode, `batch` items at a time.
pub fn evaluate(
    model: &mut dyn Module<f32>,
    data: &Dataset,
    batch: usize,
) -> Result<Evaluation, TrainError> {
    evaluate_with(
        model,
        data,
        &EvalOptions {
            batch,
            ..EvalOptions::default()
        },
    )
}

/// The network's outputs `o` for a `[B, …]` batch in evaluation mode.
pub fn logits(model: &mut dyn Module<f32>, images: Tensor<f32>) -> Result<Tensor<f32>, TrainError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut tape = Tape::inference();
    let x = tape.input(images);
    let mut ctx = Ctx::new(Mode::Eval, &mut rng);
    let out = model.forward(&mut tape, x, &mut ctx)?;
    Ok(tape.value(out).map_err(NnError::from)?.clone())
}

/// Class probabilities `s(o)` of a `[B, …]` batch in evaluation mode.
fn probabilities(
    model: &mut dyn Module<f32>,
    images: Tensor<f32>,
) -> Result<Tensor<f32>, TrainError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut tape = Tape::inference();
    let x = tape.input(images);
    let mut ctx = Ctx::new(Mode::Eval, &mut rng);
    let out = model.forward(&mut tape, x, &mut ctx)?;
    let p = tape.softmax(out).map_err(NnError::from)?;
    Ok(tape.value(p).map_err(NnError::from)?.clone())
}

/// Evaluates `model` on `data` as `opts` says (transform, multi-crop).
pub fn evaluate_with(
    model: &mut dyn Module<f32>,
    data: &Dataset,
    opts: &EvalOptions,
) -> Result<Evaluation, TrainError> {
    let (rank, ranks) = rank_size(opts.group.as_ref());
    if let (Some(group), true) = (&opts.group, ranks > 1) {
        // Each rank evaluates a contiguous share; one sum adds the counts.
        let share = Batcher::share(data.len(), rank, ranks);
        let part = data.subset(share.start, share.end)?;
        let local = EvalOptions {
            group: None,
            ..opts.clone()
        };
        let (right, confusion) = evaluate_counts(model, &part, &local)?;
        let classes = confusion.len();
        let mut sums: Vec<f64> = std::iter::once(right as f64)
            .chain(confusion.iter().flatten().map(|&c| c as f64))
            .collect();
        group
            .all_reduce_f64(&mut sums)
            .map_err(TrainError::Collective)?;
        let confusion = sums[1..]
            .chunks(classes.max(1))
            .take(classes)
            .map(|row| row.iter().map(|&c| c as usize).collect())
            .collect();
        return Ok(Evaluation {
            accuracy: sums[0] / data.len().max(1) as f64,
            confusion,
        });
    }
    let (right, confusion) = evaluate_counts(model, data, opts)?;
    Ok(Evaluation {
        accuracy: right as f64 / data.len().max(1) as f64,
        confusion,
    })
}

/// The right answers and the confusion matrix of `model` on `data`, in this
/// process.
fn evaluate_counts(
    model: &mut dyn Module<f32>,
    data: &Dataset,
    opts: &EvalOptions,
) -> Result<(usize, Vec<Vec<usize>>), TrainError> {
    let classes = data.num_classes();
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut right = 0;
    for (b, batch) in Batcher::new(opts.batch.max(1))?.epoch(data, 0).enumerate() {
        let mut images = batch.images;
        if let Some(t) = &opts.transform {
            images = t.apply_batch(&images, 0, b as u64)?;
        }
        let probs = match (opts.tta, opts.multi_crop) {
            (Some(shift), _) => {
                // Weighted mean of the views' logits, then the arg-max.
                let mut sum: Option<Vec<f32>> = None;
                let mut shape = Vec::new();
                for (v, weight) in strata_data::translate_views(&images, shift)? {
                    let o = logits(model, v)?;
                    shape = o.shape().to_vec();
                    let o = o.to_contiguous_slice();
                    match &mut sum {
                        None => sum = Some(o.iter().map(|x| weight * x).collect()),
                        Some(s) => s
                            .iter_mut()
                            .zip(o.iter())
                            .for_each(|(a, b)| *a += weight * b),
                    }
                }
                Tensor::from_vec(sum.unwrap_or_default(), &shape)
                    .map_err(|e| TrainError::Config(e.to_string()))?
            }
            (None, None) => probabilities(model, images)?,
            (None, Some([h, w])) => {
                // Average s(o) over the views, then take the arg-max.
                let mut sum: Option<Vec<f32>> = None;
                let mut shape = Vec::new();
                let views = multi_crop(&images, h, w, opts.mirror)?;
                let n = views.len() as f32;
                for v in views {
                    let p = probabilities(model, v)?;
                    shape = p.shape().to_vec();
                    match &mut sum {
                        None => sum = Some(p.to_vec()),
                        Some(s) => s
                            .iter_mut()
                            .zip(p.to_contiguous_slice().iter())
                            .for_each(|(a, b)| *a += b),
                    }
                }
                let avg: Vec<f32> = sum.unwrap_or_default().into_iter().map(|v| v / n).collect();
                Tensor::from_vec(avg, &shape).map_err(|e| TrainError::Config(e.to_string()))?
            }
        };
        let cols = probs.shape().get(1).copied().unwrap_or(1);
        let pred = argmax_rows(&probs.to_contiguous_slice(), batch.labels.len(), cols);
        for (&p, &y) in pred.iter().zip(&batch.labels) {
            right += usize::from(p == y);
            if y < classes && p < classes {
                confusion[y][p] += 1;
            }
        }
    }
    Ok((right, confusion))
}
