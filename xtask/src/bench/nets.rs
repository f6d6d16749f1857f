//! The reference networks of DESIGN.md ("Reference workloads"): training and
//! inference samples/s at batch 128, optionally beside PyTorch and with a
//! per-op profile.
//!
//! A training step is what `strata-train` does: tape forward, softmax
//! cross-entropy, backward, then SGD with momentum 0.9 and weight decay 5e-4
//! (the tape is dropped first, so the update writes the weights in place).
//! Inference is a forward pass on an inference tape in evaluation mode.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::{Profiler, Tape};
use strata_nn::{
    BatchNorm, Conv2dConfig, Ctx, Dropout, Flatten, Gelu, GlobalAvgPool, Linear, MaxPool2d, Mode,
    Module, Padding, Relu, ResNetConfig, Residual, ResidualKind, Sequential,
};
use strata_optim::{Method, Optimizer, Schedule};
use strata_tensor::Tensor;

use super::{peak, torch, Line, Opts, Out};

const BATCH: usize = 128;

type Rng64 = Xoshiro256PlusPlus;
type Build = fn(&mut Rng64) -> Result<Sequential<f32>, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `mlp`: Linear 784→1024, ReLU, Linear 1024→1024, ReLU, Linear 1024→10
/// (each ReLU fused into the layer before it).
fn build_mlp(rng: &mut Rng64) -> Result<Sequential<f32>, String> {
    let mut s = Sequential::new();
    s.push(Flatten);
    s.push(Linear::new(784, 1024, rng).map_err(err)?.with_relu());
    s.push(Linear::new(1024, 1024, rng).map_err(err)?.with_relu());
    s.push(Linear::new(1024, 10, rng).map_err(err)?);
    Ok(s)
}

/// `cnn`: two 3×3 conv + ReLU + 2×2 max-pool stages, Linear 3136→128, ReLU,
/// dropout 0.5, Linear 128→10.
fn build_cnn(rng: &mut Rng64) -> Result<Sequential<f32>, String> {
    let conv = |i, o, rng: &mut Rng64| {
        Conv2dConfig::new(i, o, 3)
            .padding(Padding::Uniform(1))
            .build::<f32>(rng)
            .map_err(err)
    };
    let mut s = Sequential::new();
    s.push(conv(1, 32, rng)?).push(Relu).push(MaxPool2d::new(2));
    s.push(conv(32, 64, rng)?)
        .push(Relu)
        .push(MaxPool2d::new(2));
    s.push(Flatten);
    s.push(Linear::new(3136, 128, rng).map_err(err)?.with_relu());
    s.push(Dropout::new(0.5).map_err(err)?);
    s.push(Linear::new(128, 10, rng).map_err(err)?);
    Ok(s)
}

/// `resnet20`: He et al.'s CIFAR ResNet-20 (original variant).
fn build_resnet20(rng: &mut Rng64) -> Result<Sequential<f32>, String> {
    ResNetConfig::resnet20().build(rng).map_err(err)
}

/// `fashion-resnet`: the pre-activation ResNet of `examples/fashion-resnet.toml`
/// (3×3 stem of 32 slices at 28×28, stages of two layers at 32/64/128 slices,
/// each halving the image).
fn build_fashion_resnet(rng: &mut Rng64) -> Result<Sequential<f32>, String> {
    let mut s = Sequential::new();
    let stem = Conv2dConfig::new(1, 32, 3)
        .padding(Padding::Same)
        .bias(false);
    s.push(stem.build(rng).map_err(err)?);
    let mut c = 32;
    for out in [32, 64, 128] {
        for stride in [2, 1] {
            let kind = ResidualKind::PreActivation;
            s.push(Residual::basic(kind, c, out, stride, true, rng).map_err(err)?);
            c = out;
        }
    }
    s.push(BatchNorm::new(c).map_err(err)?);
    s.push(Relu);
    s.push(GlobalAvgPool);
    s.push(Linear::new(c, 10, rng).map_err(err)?);
    Ok(s)
}

/// `airbench`: the CIFAR-10 network of examples/cifar10-fast.toml (Keller
/// Jordan's airbench94 layout): a 2×2 convolution to 24 slices (the
/// patch-whitening layer), then three groups of conv → 2×2 max-pool → batch
/// norm → activation → conv → batch norm → activation at 64, 256 and 256
/// slices, a 3×3 max-pool and a linear layer to the 10 classes.
fn build_airbench(rng: &mut Rng64) -> Result<Sequential<f32>, String> {
    let conv = |i, o, k, pad, rng: &mut Rng64| {
        Conv2dConfig::new(i, o, k)
            .padding(pad)
            .bias(false)
            .build::<f32>(rng)
            .map_err(err)
    };
    // Batch norm without a learned scale, as the spec has it.
    let bn = |c| -> Result<BatchNorm<f32>, String> {
        let mut b = BatchNorm::new(c).map_err(err)?;
        b.gamma.frozen = true;
        Ok(b)
    };
    let mut s = Sequential::new();
    let mut whiten = conv(3, 24, 2, Padding::Valid, rng)?;
    whiten.weight.frozen = true;
    s.push(whiten).push(Gelu);
    let mut c = 24;
    for w in [64, 256, 256] {
        s.push(conv(c, w, 3, Padding::Uniform(1), rng)?)
            .push(MaxPool2d::new(2))
            .push(bn(w)?)
            .push(Gelu);
        s.push(conv(w, w, 3, Padding::Uniform(1), rng)?)
            .push(bn(w)?)
            .push(Gelu);
        c = w;
    }
    s.push(MaxPool2d::new(3)).push(Flatten);
    s.push(Linear::new(c, 10, rng).map_err(err)?);
    Ok(s)
}

/// The `mlp` workload.
pub fn mlp(o: &Opts, out: Out) -> Result<(), String> {
    run(o, "mlp", &[1, 28, 28], build_mlp, out)
}

/// The `cnn` workload.
pub fn cnn(o: &Opts, out: Out) -> Result<(), String> {
    run(o, "cnn", &[1, 28, 28], build_cnn, out)
}

/// The `resnet20` workload.
pub fn resnet20(o: &Opts, out: Out) -> Result<(), String> {
    run(o, "resnet20", &[3, 32, 32], build_resnet20, out)
}

/// The `fashion-resnet` workload.
pub fn fashion_resnet(o: &Opts, out: Out) -> Result<(), String> {
    run(o, "fashion-resnet", &[1, 28, 28], build_fashion_resnet, out)
}

/// The `airbench` workload.
pub fn airbench(o: &Opts, out: Out) -> Result<(), String> {
    run(o, "airbench", &[3, 32, 32], build_airbench, out)
}

/// Resident memory of this process, MiB (`VmRSS` of /proc/self/status).
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Steps of the `soak` workload, how often it samples RSS, and after how
/// many steps the warm-up (buffer pools filling) is over.
const SOAK_STEPS: usize = 10_000;
const SOAK_EVERY: usize = 500;
const SOAK_WARM: usize = 1_000;

/// The `soak` workload: 10,000 training steps of the mlp, resident memory
/// sampled every 500; after the warm-up it must stay within 5 % of its
/// value at the end of the warm-up (a leak of even a few bytes a step in the
/// tape, the buffer pool or the optimiser would show).
pub fn soak(_o: &Opts, out: Out) -> Result<(), String> {
    let mut bench = Bench::new(&[1, 28, 28], build_mlp)?;
    let start = Instant::now();
    let (mut base, mut lo, mut hi) = (None, f64::MAX, 0f64);
    for step in 1..=SOAK_STEPS {
        bench.train(None)?;
        if step % SOAK_EVERY != 0 {
            continue;
        }
        let rss = rss_mib().ok_or("soak: /proc/self/status has no VmRSS")?;
        if step == SOAK_WARM {
            base = Some(rss);
        }
        if step >= SOAK_WARM {
            (lo, hi) = (lo.min(rss), hi.max(rss));
        }
        out(&SoakRow {
            step,
            rss_mib: rss,
            seconds: start.elapsed().as_secs_f64(),
            verdict: None,
        });
    }
    let base = base.ok_or("soak: too few steps")?;
    let spread = (hi - lo) / base;
    out(&SoakRow {
        step: SOAK_STEPS,
        rss_mib: hi,
        seconds: start.elapsed().as_secs_f64(),
        verdict: Some((base, lo, spread)),
    });
    if spread > 0.05 {
        return Err(format!(
            "soak: RSS moved {:.1} % after the warm-up ({lo:.1}–{hi:.1} MiB)",
            100.0 * spread
        ));
    }
    Ok(())
}

/// A sample of the soak, or (with `verdict`: RSS after warm-up, lowest, and
/// spread as a fraction) its conclusion.
struct SoakRow {
    step: usize,
    rss_mib: f64,
    seconds: f64,
    verdict: Option<(f64, f64, f64)>,
}

impl Line for SoakRow {
    fn row(&self) -> String {
        match self.verdict {
            None => format!(
                "soak mlp batch={BATCH} step {:>6}: RSS {:.1} MiB ({:.0} s)",
                self.step, self.rss_mib, self.seconds
            ),
            Some((base, lo, spread)) => format!(
                "soak mlp: after the warm-up ({SOAK_WARM} steps, {base:.1} MiB) RSS stayed \
                 within {lo:.1}–{:.1} MiB, a spread of {:.2} % (limit 5 %)",
                self.rss_mib,
                100.0 * spread
            ),
        }
    }

    fn json(&self) -> String {
        match self.verdict {
            None => format!(
                "{{\"workload\":\"soak\",\"step\":{},\"rss_mib\":{:.2},\"seconds\":{:.1}}}",
                self.step, self.rss_mib, self.seconds
            ),
            Some((base, lo, spread)) => format!(
                "{{\"workload\":\"soak\",\"steps\":{},\"rss_after_warmup_mib\":{base:.2},\
                 \"rss_min_mib\":{lo:.2},\"rss_max_mib\":{:.2},\"spread\":{spread:.4}}}",
                self.step, self.rss_mib
            ),
        }
    }
}

/// A network with its optimiser, one fixed minibatch and a random source.
struct Bench {
    model: Sequential<f32>,
    opt: Optimizer<f32>,
    x: Tensor<f32>,
    labels: Vec<usize>,
    rng: Rng64,
}

impl Bench {
    fn new(input: &[usize], build: Build) -> Result<Self, String> {
        let mut rng = Rng64::seed_from_u64(0);
        let model = build(&mut rng)?;
        model.output_shape(input).map_err(err)?;
        let opt = Optimizer::new(
            Method::Momentum { mu: 0.9 },
            5e-4,
            Schedule::Constant { lr: 0.01 },
        )
        .map_err(err)?;
        let shape: Vec<usize> = [BATCH].iter().chain(input).copied().collect();
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let x = Tensor::from_vec(data, &shape).map_err(err)?;
        let labels = (0..BATCH).map(|_| rng.random_range(0..10)).collect();
        Ok(Self {
            model,
            opt,
            x,
            labels,
            rng,
        })
    }

    /// One training step; with a profiler, the optimiser's time is filed as `optimizer`.
    fn train(&mut self, prof: Option<&Profiler>) -> Result<(), String> {
        let mut tape = Tape::new();
        if let Some(p) = prof {
            tape = tape.with_profiler(p.clone());
        }
        let x = tape.input(self.x.clone());
        let mut ctx = Ctx::new(Mode::Train, &mut self.rng);
        let logits = self.model.forward(&mut tape, x, &mut ctx).map_err(err)?;
        let loss = tape
            .softmax_cross_entropy(logits, &self.labels)
            .map_err(err)?;
        let grads = tape.backward(loss).map_err(err)?;
        // The tape holds views of the weights: drop it so the update is in place.
        drop(tape);
        let t = Instant::now();
        self.opt
            .step(self.model.params_mut(), |p| grads.param(p.id()).cloned(), 0)
            .map_err(err)?;
        if let Some(p) = prof {
            p.add("optimizer", Duration::ZERO, t.elapsed());
        }
        Ok(())
    }

    /// One inference pass.
    fn eval(&mut self, prof: Option<&Profiler>) -> Result<(), String> {
        let mut tape = Tape::inference();
        if let Some(p) = prof {
            tape = tape.with_profiler(p.clone());
        }
        let x = tape.input(self.x.clone());
        let mut ctx = Ctx::new(Mode::Eval, &mut self.rng);
        let y = self.model.forward(&mut tape, x, &mut ctx).map_err(err)?;
        std::hint::black_box(tape.value(y).map_err(err)?);
        Ok(())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Measures one network: `o.rounds` rounds of (fma-peak, strata train/eval
/// windows interleaved, torch if asked), medians over rounds.
fn run(
    o: &Opts,
    name: &'static str,
    input: &[usize],
    build: Build,
    out: Out,
) -> Result<(), String> {
    let bench = RefCell::new(Bench::new(input, build)?);
    let macs = bench.borrow().model.flops(input) as f64;
    // Check both steps once outside the timed loops, where errors can be returned.
    bench.borrow_mut().train(None)?;
    bench.borrow_mut().eval(None)?;
    let (mut train, mut eval, mut peaks, mut torch) = (vec![], vec![], vec![], vec![]);
    let mut loads = vec![load()];
    for _ in 0..o.rounds {
        peaks.extend(peak::measure(o));
        let mut t = || bench.borrow_mut().train(None).expect("train step");
        let mut e = || bench.borrow_mut().eval(None).expect("eval step");
        let b = BATCH as f64;
        let r = o.timing.rates(&mut [(b, &mut t), (b, &mut e)]);
        train.push(r[0]);
        eval.push(r[1]);
        if let Some(py) = &o.compare_torch {
            let secs = o.timing.window_ms as f64 * 1e-3 * 5.0;
            torch.push(torch::run(py, name, o.threads, BATCH, secs, o.precision)?);
        }
        loads.push(load());
    }
    let (train, eval) = (median(train), median(eval));
    let peak = (!peaks.is_empty()).then(|| median(peaks));
    let gflops_train = 6.0 * macs * train * 1e-9;
    out(&NetRecord {
        workload: name,
        threads: o.threads,
        train,
        eval,
        gflops_train,
        gflops_eval: 2.0 * macs * eval * 1e-9,
        peak,
        torch: (!torch.is_empty()).then(|| {
            (
                median(torch.iter().map(|t| t.train).collect()),
                median(torch.iter().map(|t| t.eval).collect()),
                torch[0].line.clone(),
            )
        }),
        rounds: o.rounds,
        load: loads.join("/"),
    });
    if o.profile {
        let mut b = bench.borrow_mut();
        profile(o, name, &mut b, out)?;
    }
    Ok(())
}

/// Per-op wall time of training and inference steps, ms per step.
fn profile(o: &Opts, name: &'static str, b: &mut Bench, out: Out) -> Result<(), String> {
    let budget = Duration::from_millis(o.timing.window_ms * o.timing.windows as u64);
    for (phase, train) in [("train", true), ("eval", false)] {
        let p = Profiler::new();
        let (start, mut steps) = (Instant::now(), 0u32);
        while steps < 3 || start.elapsed() < budget {
            if train {
                b.train(Some(&p))?;
            } else {
                b.eval(Some(&p))?;
            }
            steps += 1;
        }
        let total = start.elapsed().as_secs_f64() * 1e3 / steps as f64;
        let ops = p.report();
        let timed: f64 = ops
            .iter()
            .map(|(_, t)| (t.forward + t.backward).as_secs_f64() * 1e3)
            .sum::<f64>()
            / steps as f64;
        let rows = ops.into_iter().map(|(op, t)| {
            let per = |d: Duration| d.as_secs_f64() * 1e3 / steps as f64;
            (
                op,
                t.calls as f64 / steps as f64,
                per(t.forward),
                per(t.backward),
            )
        });
        let other = ("(untimed)".to_string(), 0.0, total - timed, 0.0);
        for (op, calls, fwd, bwd) in rows.chain(std::iter::once(other)) {
            out(&ProfileRow {
                workload: name,
                phase,
                op,
                calls,
                forward_ms: fwd,
                backward_ms: bwd,
                share: (fwd + bwd) / total,
                step_ms: total,
            });
        }
    }
    Ok(())
}

/// A network's figures.
struct NetRecord {
    workload: &'static str,
    threads: usize,
    train: f64,
    eval: f64,
    gflops_train: f64,
    gflops_eval: f64,
    peak: Option<f64>,
    /// Torch train, eval samples/s and its version line.
    torch: Option<(f64, f64, String)>,
    rounds: usize,
    load: String,
}

impl Line for NetRecord {
    fn row(&self) -> String {
        let mut s = format!(
            "{} threads={} batch={BATCH}: train {:.0} samples/s, eval {:.0} samples/s, \
             {:.1} GFLOPS train",
            self.workload, self.threads, self.train, self.eval, self.gflops_train
        );
        if let Some(p) = self.peak {
            s += &format!(" = {:.2} of fma-peak {p:.0}", self.gflops_train / p);
        }
        if let Some((tt, te, line)) = &self.torch {
            s += &format!(
                "\n  {line}\n  strata/torch: train {:.2}×, eval {:.2}×",
                self.train / tt,
                self.eval / te
            );
        }
        s + &format!(" (rounds {}, load {})", self.rounds, self.load)
    }

    fn json(&self) -> String {
        let mut s = format!(
            "{{\"workload\":\"{}\",\"threads\":{},\"batch\":{BATCH},\"train_samples_per_s\":{:.0},\
             \"eval_samples_per_s\":{:.0},\"gflops_train\":{:.1},\"gflops_eval\":{:.1}",
            self.workload, self.threads, self.train, self.eval, self.gflops_train, self.gflops_eval
        );
        if let Some(p) = self.peak {
            s += &format!(
                ",\"peak_gflops\":{p:.1},\"peak\":\"fma-peak (the faster of the 256- and 512-bit FMA loops, measured)\",\"peak_fraction\":{:.3}",
                self.gflops_train / p
            );
        }
        if let Some((tt, te, _)) = &self.torch {
            s += &format!(
                ",\"torch_train_samples_per_s\":{tt:.0},\"torch_eval_samples_per_s\":{te:.0},\
                 \"ratio_train\":{:.3},\"ratio_eval\":{:.3}",
                self.train / tt,
                self.eval / te
            );
        }
        s + &format!(",\"rounds\":{},\"load\":\"{}\"}}", self.rounds, self.load)
    }
}

/// One op's share of a step.
struct ProfileRow {
    workload: &'static str,
    phase: &'static str,
    op: String,
    calls: f64,
    forward_ms: f64,
    backward_ms: f64,
    share: f64,
    step_ms: f64,
}

impl Line for ProfileRow {
    fn header(&self) -> Option<String> {
        Some(format!(
            "profile {} {} ({:.2} ms/step): {:<22} {:>6} {:>10} {:>11} {:>6}",
            self.workload, self.phase, self.step_ms, "op", "calls", "fwd ms", "bwd ms", "share"
        ))
    }

    fn row(&self) -> String {
        format!(
            "  {:<22} {:>6.1} {:>10.3} {:>11.3} {:>5.1}%",
            self.op,
            self.calls,
            self.forward_ms,
            self.backward_ms,
            self.share * 100.0
        )
    }

    fn json(&self) -> String {
        format!(
            "{{\"workload\":\"{}\",\"profile\":\"{}\",\"op\":\"{}\",\"calls_per_step\":{:.1},\
             \"forward_ms\":{:.3},\"backward_ms\":{:.3},\"share\":{:.3},\"step_ms\":{:.3}}}",
            self.workload,
            self.phase,
            self.op,
            self.calls,
            self.forward_ms,
            self.backward_ms,
            self.share,
            self.step_ms
        )
    }
}
