//! `strata eval`: a trained model folder evaluated on held-out test data.

use crate::failure::Failure;
use std::path::PathBuf;
use strata_train::run;

/// The arguments of `strata eval` (its help is the doc comment of
/// `Command::Eval` in main.rs).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// A folder written by `strata train`.
    model_dir: PathBuf,
    /// Evaluate on this data set's test split instead of the spec's.
    #[arg(long)]
    data: Option<String>,
    /// Look for data sets in this folder first.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Average predictions over the centre and corner crops (and mirrors,
    /// unless the spec says `eval.mirror = false`).
    #[arg(long)]
    multi_crop: bool,
    /// Evaluate each image once even if the spec asks for multi-crop.
    #[arg(long, conflicts_with = "multi_crop")]
    single_crop: bool,
}

/// Runs `strata eval`.
pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let Args {
        model_dir,
        data,
        data_dir,
        multi_crop,
        single_crop,
    } = args;
    let views = match (multi_crop, single_crop) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let (eval, names) = run::eval_dir(&model_dir, data.as_deref(), data_dir.as_deref(), views)?;
    print!("{}", run::confusion_text(&eval, &names));
    println!("test accuracy {:.2}%", 100.0 * eval.accuracy);
    Ok(())
}
