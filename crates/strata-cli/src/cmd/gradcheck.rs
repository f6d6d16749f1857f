//! `strata gradcheck`: backprop against finite differences, in f64.

use super::load_spec;
use crate::failure::Failure;
use std::path::PathBuf;
use strata_train::run;

/// The arguments of `strata gradcheck` (its help is the doc comment of
/// `Command::Gradcheck` in main.rs).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The spec file.
    spec: PathBuf,
    /// Items in the check's minibatch.
    #[arg(long, default_value_t = 4)]
    items: usize,
    /// Fail above this relative error.
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f64,
    /// Look for data sets in this folder first.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Runs `strata gradcheck`.
pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let Args {
        spec,
        items,
        tolerance,
        data_dir,
    } = args;
    let s = load_spec(&spec, &[])?;
    let reports = run::gradcheck(&s, data_dir.as_deref(), items.max(1))?;
    let mut worst = 0.0f64;
    println!(
        "{:<28} {:>8} {:>14} {:>14}",
        "parameter", "checked", "max rel. error", "max abs. error"
    );
    for r in &reports {
        println!(
            "{:<28} {:>8} {:>14.3e} {:>14.3e}",
            r.name, r.checked, r.max_rel_error, r.max_abs_error
        );
        worst = worst.max(r.max_rel_error);
    }
    if worst > tolerance {
        return Err(Failure(
            format!("worst relative error {worst:.3e} exceeds the tolerance {tolerance:.1e}"),
            1,
        ));
    }
    println!("ok: worst relative error {worst:.3e} ≤ {tolerance:.1e}");
    Ok(())
}
