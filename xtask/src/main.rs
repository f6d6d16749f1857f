//! `cargo xtask …` — project automation.
//!
//! `cargo xtask bench [WORKLOAD…] [--threads N] [--json] [--window-ms MS] [--windows W]
//! [--rounds R] [--compare-torch PYTHON] [--profile] [--matmul-precision f32|bf16]` runs the named benchmark
//! workloads (all of them if none is named) and prints a table, or one JSON
//! object per line with `--json`. For the networks, `--compare-torch` runs
//! `../shared/bench/torch_bench.py` with that interpreter between strata's
//! rounds and prints strata/torch ratios; `--profile` prints where a step's
//! time goes, op by op.
//!
//! `cargo xtask test [ARGS…]` is the README's test command: it installs what
//! the tests need on a fresh machine (the Fashion-MNIST Debian package),
//! then runs `cargo test --workspace ARGS…`.

mod bench;
mod interop;
mod test;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask bench [WORKLOAD…] [--threads N] [--json] [--window-ms MS] \
                     [--windows W] [--rounds R] [--compare-torch PYTHON] [--profile]\n                     \
                     [--matmul-precision f32|bf16]\n       \
                     cargo xtask test [CARGO TEST ARGS…]\n       \
                     cargo xtask install   (what the tests need: Fashion-MNIST, Open MPI, onnxruntime in a venv)\n       \
                     cargo xtask interop PYTHON   (strata export --torch against PyTorch; PYTHON has torch and safetensors)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench::Opts::parse(&args[1..]).and_then(|o| bench::run(&o)),
        Some("install") => match test::install() {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        Some("interop") => match interop::interop(&args[1..]) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        Some("test") => match test::test(&args[1..]) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => Err(String::new()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            eprint!("workloads (default: all):\n{}", bench::list());
            ExitCode::from(2)
        }
    }
}
