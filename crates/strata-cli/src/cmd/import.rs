//! `strata import`: a PyTorch state dict loaded into a spec's network.

use super::load_spec;
use crate::failure::Failure;
use std::path::PathBuf;

/// The arguments of `strata import` (its help is the doc comment of
/// `Command::Import` in main.rs).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The spec whose network matches the state dict's.
    spec: PathBuf,
    /// The state dict, saved with `safetensors.torch.save_file`.
    state: PathBuf,
    /// The model folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Look for data sets in this folder first.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Runs `strata import`.
pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let Args {
        spec,
        state,
        out,
        data_dir,
    } = args;
    let s = load_spec(&spec, &[])?;
    let r = strata_train::import::import(&s, &state, data_dir.as_deref(), &out)?;
    for (ours, theirs) in &r.mapped {
        if ours != theirs {
            println!("{theirs:<32} -> {ours}");
        }
    }
    println!(
        "wrote {} ({} tensors{}); `strata eval {}` evaluates it",
        out.display(),
        r.mapped.len(),
        if r.ignored.is_empty() {
            String::new()
        } else {
            format!(", {} batch counters left out", r.ignored.len())
        },
        out.display()
    );
    Ok(())
}
