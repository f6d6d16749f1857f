//! `cargo xtask bench`: a registry of workloads, options and output.
//!
//! A workload is a function that measures something and reports [`Record`]s
//! through a callback; add new ones to [`WORKLOADS`].

mod gemm;
mod peak;
mod timing;

/// Every workload: name, what it measures, and the function that runs it.
const WORKLOADS: &[Workload] = &[
    Workload {
        name: "gemm",
        about: "sgemm at n = 256…2048 (+ dgemm n = 1024), every implementation",
        run: gemm::square,
    },
    Workload {
        name: "fma-peak",
        about: "AVX2 FMA rate of a register-only loop: the ceiling right now",
        run: peak::fma_peak,
    },
    Workload {
        name: "gemm-layers",
        about: "sgemm at neural-net layer shapes (batch 128)",
        run: gemm::layers,
    },
];

/// A named benchmark.
struct Workload {
    name: &'static str,
    about: &'static str,
    run: fn(&Opts, &mut dyn FnMut(Record)),
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
}

impl Opts {
    /// Parses the arguments after `bench`.
    pub fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts {
            workloads: Vec::new(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            json: false,
            timing: timing::Timing::default(),
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
                s if s.starts_with('-') => return Err(format!("unknown option {s}")),
                s if WORKLOADS.iter().any(|w| w.name == s) => o.workloads.push(s.to_string()),
                s => return Err(format!("unknown workload {s}")),
            }
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
}

impl Record {
    fn json(&self) -> String {
        let shape = match self.shape {
            Shape::Square(0) => String::from("\"n\":null"),
            Shape::Square(n) => format!("\"n\":{n}"),
            Shape::Mnk(m, n, k, op) => format!("\"m\":{m},\"n\":{n},\"k\":{k},\"op\":\"{op}\""),
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
    if !o.json {
        println!(
            "{:<8} {:<26} {:<22} {:>7} {:>9}",
            "workload", "impl", "shape", "threads", "GFLOPS"
        );
    }
    let mut print = |r: Record| println!("{}", if o.json { r.json() } else { r.row() });
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
        (w.run)(o, &mut print);
    }
    Ok(())
}
