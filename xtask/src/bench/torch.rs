//! The PyTorch anchor: runs `../shared/bench/torch_bench.py` for one workload
//! with a given interpreter and reads back its samples/s.

use std::path::PathBuf;
use std::process::Command;

/// Train and eval samples/s of torch for one workload, and its version line.
pub struct TorchRates {
    /// Training samples/s (median of the script's windows).
    pub train: f64,
    /// Inference samples/s.
    pub eval: f64,
    /// The script's own output line (torch version, threads).
    pub line: String,
}

/// The script, next to the repository: `<workspace>/../shared/bench/torch_bench.py`,
/// or, for the network the shared script lacks (`airbench`), the repository's
/// `benches/torch_bench_airbench.py`, which runs the shared script's loop on it.
fn script(workload: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if workload == "airbench" {
        root.join("../benches/torch_bench_airbench.py")
    } else {
        root.join("../../shared/bench/torch_bench.py")
    }
}

/// Runs the script for `workload` on `threads` threads for `seconds` per
/// phase, with torch's fp32 matrix products at `precision`.
pub fn run(
    python: &str,
    workload: &str,
    threads: usize,
    batch: usize,
    seconds: f64,
    precision: strata_kernels::gemm::MatmulPrecision,
) -> Result<TorchRates, String> {
    let mut cmd = Command::new(python);
    if precision != Default::default() {
        // The wrapper sets torch's fp32 matmul precision, then runs the script.
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        cmd.arg(root.join("../benches/torch_fp32_precision.py"))
            .arg(precision.name());
    }
    let out = cmd
        .arg(script(workload))
        .args(["--threads", &threads.to_string()])
        .args(["--batch", &batch.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--only", workload])
        .output()
        .map_err(|e| format!("running {python} {}: {e}", script(workload).display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "torch_bench.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let line = text
        .lines()
        .find(|l| l.contains(&format!(" {workload} ")))
        .ok_or_else(|| format!("torch_bench.py printed no line for {workload}: {text}"))?;
    // "... : train 12503 samples/s, eval 51526 samples/s"
    let after = |key: &str| -> Result<f64, String> {
        line.split(key)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no `{key}` figure in torch_bench.py output: {line}"))
    };
    Ok(TorchRates {
        train: after("train ")?,
        eval: after("eval ")?,
        line: line.to_string(),
    })
}
