//! `cargo xtask bench`: a registry of workloads, options and output.
//!
//! A workload is a function that measures something and reports [`Line`]s
//! (a [`Record`] of GFLOPS, a network's samples/s, a profile row) through a
//! callback; add new ones to [`WORKLOADS`].

mod conv;
mod gemm;
mod nets;
mod peak;
mod timing;
mod torch;

/// Every workload: name, what it measures, and the function that runs it.
const WORKLOADS: &[Workload] = &[
    Workload {
        name: "gemm",
        about: "sgemm at n = 256…2048 (+ dgemm n = 1024), every implementation",
        run: gemm::square,
    },
    Workload {
        name: "fma-peak",
        about: "FMA rate of register-only loops, 256- and 512-bit: the higher is the ceiling right now",
        run: peak::fma_peak,
    },
    Workload {
        name: "gemm-layers",
        about: "sgemm at neural-net layer shapes (batch 128)",
        run: gemm::layers,
    },
    Workload {
        name: "conv",
        about: "3×3 convs (64→64 32×32 b64, and the ResNet-20/CNN layers): forward, backward-data, backward-weights",
        run: conv::conv,
    },
    Workload {
        name: "mlp",
        about: "MLP 784-1024-1024-10, batch 128: train and eval samples/s",
        run: nets::mlp,
    },
    Workload {
        name: "cnn",
        about: "2-conv CNN on 1×28×28, batch 128: train and eval samples/s",
        run: nets::cnn,
    },
    Workload {
        name: "resnet20",
        about: "CIFAR ResNet-20 on 3×32×32, batch 128: train and eval samples/s",
        run: nets::resnet20,
    },
    Workload {
        name: "fashion-resnet",
        about: "pre-activation ResNet of examples/fashion-resnet.toml on 1×28×28, batch 128",
        run: nets::fashion_resnet,
    },
    Workload {
        name: "airbench",
        about: "the CIFAR-10 net of examples/cifar10-fast.toml (airbench94 layout), batch 128",
        run: nets::airbench,
    },
    Workload {
        name: "soak",
        about: "10,000 mlp training steps, RSS every 500: flat within 5 % after a 1,000-step warm-up",
        run: nets::soak,
    },
];

/// Where a workload's results go.
pub type Out<'a> = &'a mut dyn FnMut(&dyn Line);

/// One line of output, as a table row or a JSON object.
pub trait Line {
    /// The table header this row belongs under (printed when it changes).
    fn header(&self) -> Option<String> {
        None
    }
    /// A human-readable row.
    fn row(&self) -> String;
    /// A one-line JSON object.
    fn json(&self) -> String;
}

/// A named benchmark.
struct Workload {
    name: &'static str,
    about: &'static str,
    run: fn(&Opts, Out) -> Result<(), String>,
}

/// One line per workload, for the usage message.
pub fn list() -> String {
    WORKLOADS
        .iter()
        .map(|w| format!("  {:<12} {}\n", w.name, w.about))
        .collect()
}

/// Command-line options of `bench`.
pub struct Opts {
    /// Workloads to run (empty: all).
    workloads: Vec<String>,
    /// Threads for the kernels' pool.
    pub threads: usize,
    /// One JSON object per line instead of a table.
    json: bool,
    /// Timing: the length and count of timed windows.
    pub timing: timing::Timing,
    /// Python interpreter with torch, to run `torch_bench.py` beside strata.
    pub compare_torch: Option<String>,
    /// Print a per-op profile of each network.
    pub profile: bool,
    /// Measurement rounds per network (interleaved with torch when comparing).
    pub rounds: usize,
    /// `--matmul-precision`: how strata's (and, with `--compare-torch`,
    /// torch's) f32 matrix products are computed.
    pub precision: strata_kernels::gemm::MatmulPrecision,
}

impl Opts {
    /// Parses the arguments after `bench`.
    pub fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts {
            workloads: Vec::new(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            json: false,
            timing: timing::Timing::default(),
            compare_torch: None,
            profile: false,
            rounds: 0,
            precision: Default::default(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut num = |flag: &str| -> Result<usize, String> {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .ok_or(format!("{flag} needs a positive integer"))
            };
            match a.as_str() {
                "--json" => o.json = true,
                "--threads" => o.threads = num("--threads")?.max(1),
                "--window-ms" => o.timing.window_ms = num("--window-ms")? as u64,
                "--windows" => o.timing.windows = num("--windows")?.max(1),
                "--rounds" => o.rounds = num("--rounds")?.max(1),
                "--profile" => o.profile = true,
                "--matmul-precision" => {
                    let v = it.next().ok_or("--matmul-precision needs f32 or bf16")?;
                    o.precision = v.parse().map_err(|e| format!("--matmul-precision: {e}"))?;
                }
                "--compare-torch" => {
                    o.compare_torch =
                        Some(it.next().ok_or("--compare-torch needs a python")?.clone())
                }
                s if s.starts_with('-') => return Err(format!("unknown option {s}")),
                s if WORKLOADS.iter().any(|w| w.name == s) => o.workloads.push(s.to_string()),
                s => return Err(format!("unknown workload {s}")),
            }
        }
        if o.rounds == 0 {
            // Interleaving with torch needs several rounds to be fair to both.
            o.rounds = if o.compare_torch.is_some() { 3 } else { 1 };
        }
        Ok(o)
    }
}

/// One measurement.
pub struct Record {
    /// Workload line, e.g. `sgemm`.
    pub workload: String,
    /// Implementation measured.
    pub imp: String,
    /// Shape: `n` for square problems, else `m x n x k` plus transposes.
    pub shape: Shape,
    /// Threads used.
    pub threads: usize,
    /// Median rate.
    pub gflops: f64,
}

/// Problem shape of a [`Record`].
#[derive(Clone, Copy)]
pub enum Shape {
    /// Square n × n × n.
    Square(usize),
    /// `m × n × k` with a label such as `"AᵀB"`.
    Mnk(usize, usize, usize, &'static str),
    /// A free-form shape description.
    Label(&'static str),
}

impl Line for Record {
    fn header(&self) -> Option<String> {
        Some(format!(
            "{:<8} {:<26} {:<22} {:>7} {:>9}",
            "workload", "impl", "shape", "threads", "GFLOPS"
        ))
    }

    fn json(&self) -> String {
        let shape = match self.shape {
            Shape::Square(0) => String::from("\"n\":null"),
            Shape::Square(n) => format!("\"n\":{n}"),
            Shape::Mnk(m, n, k, op) => format!("\"m\":{m},\"n\":{n},\"k\":{k},\"op\":\"{op}\""),
            Shape::Label(l) => format!("\"shape\":\"{l}\""),
        };
        format!(
            "{{\"workload\":\"{}\",\"impl\":\"{}\",{shape},\"threads\":{},\"gflops\":{:.1}}}",
            self.workload, self.imp, self.threads, self.gflops
        )
    }

    fn row(&self) -> String {
        let shape = match self.shape {
            Shape::Square(0) => String::from("-"),
            Shape::Square(n) => format!("n = {n}"),
            Shape::Mnk(m, n, k, op) => format!("{op} {m}×{n}×{k}"),
            Shape::Label(l) => l.to_string(),
        };
        format!(
            "{:<8} {:<26} {:<22} {:>7} {:>9.1}",
            self.workload, self.imp, shape, self.threads, self.gflops
        )
    }
}

/// Runs the selected workloads, printing each record as it is measured.
pub fn run(o: &Opts) -> Result<(), String> {
    // matrixmultiply sizes its own pool once, from this variable.
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        std::env::set_var("MATMUL_NUM_THREADS", o.threads.to_string());
    }
    strata_kernels::parallel::set_num_threads(o.threads);
    strata_kernels::gemm::set_matmul_precision(o.precision);
    if o.precision != Default::default() {
        println!(
            "matmul precision {} (strata: {}; torch, when compared: \
             torch.backends.mkldnn.matmul.fp32_precision = \"{}\")",
            o.precision.name(),
            if strata_kernels::gemm::bf16_in_effect() {
                "AMX-BF16 tiles"
            } else {
                "no AMX-BF16 on this host, so f32"
            },
            o.precision.name()
        );
    }
    let mut header = None;
    let mut print = |r: &dyn Line| {
        if o.json {
            return println!("{}", r.json());
        }
        let h = r.header();
        if h.is_some() && h != header {
            println!("{}", h.as_deref().unwrap_or_default());
            header = h;
        }
        println!("{}", r.row());
    };
    // In the order asked for (all, in registry order, if none was named).
    let chosen: Vec<&Workload> = if o.workloads.is_empty() {
        WORKLOADS.iter().collect()
    } else {
        o.workloads
            .iter()
            .filter_map(|s| WORKLOADS.iter().find(|w| w.name == s))
            .collect()
    };
    for w in chosen {
        (w.run)(o, &mut print)?;
    }
    Ok(())
}
