//! `strata sweep`: one run per value, chosen on validation, the best tested.

use super::default_out;
use crate::failure::Failure;
use crate::progress;
use std::path::PathBuf;
use strata_train::run::RunOptions;

/// The arguments of `strata sweep` (its help is the doc comment of
/// `Command::Sweep` in main.rs).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The spec file.
    spec: PathBuf,
    /// KEY=V1,V2,… values to try (repeat for a grid).
    #[arg(long = "set", value_name = "KEY=V1,V2", required = true)]
    sets: Vec<String>,
    /// Output folder (default: runs/NAME-sweep, NAME the spec file's name without .toml).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Look for data sets in this folder first.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Override train.epochs for every run.
    #[arg(long)]
    epochs: Option<usize>,
    /// Kernel threads (0: all cores; at most 1024).
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs `strata sweep`.
pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let Args {
        spec,
        sets,
        out,
        data_dir,
        epochs,
        threads,
    } = args;
    let out = out.unwrap_or_else(|| default_out(&spec, "-sweep"));
    let opts = RunOptions {
        out: out.clone(),
        data_dir,
        epochs,
        threads,
        resume: false,
        skip_test: true,
        overwrite: false,
        group: None,
    };
    let mut bar = progress::Progress::new();
    progress::stop_on_ctrl_c();
    let r = strata_train::sweep::sweep(&spec, &sets, &opts, &mut bar)?;
    bar.finish();
    println!(
        "{:<5} {:<50} {:>12} {:>10}",
        "run", "settings", "validation", "seconds"
    );
    for (i, row) in r.rows.iter().enumerate() {
        let mark = if i == r.best { "*" } else { " " };
        println!(
            "{i:<4}{mark} {:<50} {:>11.2}% {:>10.1}",
            row.settings.join(" "),
            100.0 * row.validation_accuracy,
            row.train_seconds
        );
    }
    println!(
        "best: run {} — held-out test accuracy {:.2}%",
        r.best,
        100.0 * r.test_accuracy
    );
    println!("table written to {}", out.join("sweep.md").display());
    Ok(())
}
