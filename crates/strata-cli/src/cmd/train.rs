//! `strata train`: train the network a spec describes (one process or, with
//! the `mpi` feature, a data-parallel group started by `mpirun`).

use super::{default_out, load_spec};
use crate::failure::Failure;
use crate::progress;
use std::path::PathBuf;
use strata_train::run::{self, RunOptions};

/// The arguments of `strata train` (its help is the doc comment of
/// `Command::Train` in main.rs).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The spec file.
    spec: PathBuf,
    /// Output folder (default: runs/NAME, NAME the spec file's name without .toml).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Look for data sets in this folder first.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Override train.epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Kernel threads (0: all cores; at most 1024).
    #[arg(long)]
    threads: Option<usize>,
    /// Continue from the output folder's last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Replace another run in the output folder (its checkpoint and logs are removed first).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Override a spec field, e.g. --set optimizer.weight_decay=1e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

/// Runs `strata train`.
pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let Args {
        spec,
        out,
        data_dir,
        epochs,
        threads,
        resume,
        overwrite,
        sets,
    } = args;
    let s = load_spec(&spec, &sets)?;
    let out = out.unwrap_or_else(|| default_out(&spec, ""));
    let group = mpi_group()?;
    let opts = RunOptions {
        out: out.clone(),
        data_dir,
        epochs,
        threads,
        resume,
        skip_test: false,
        overwrite,
        group: group.clone(),
    };
    let mut bar = progress::Progress::new();
    progress::stop_on_ctrl_c();
    let summary = match run::train(&s, &opts, &mut bar) {
        Ok(summary) => summary,
        // A rank that fails alone must not finalise MPI while the
        // others wait in a sum: leave at once, so mpirun ends the job
        // (instead of the others' watchdog, minutes later).
        Err(e) if group.as_ref().is_some_and(|g| g.size() > 1) => {
            let together = e.reached_by_every_rank();
            let Failure(msg, code) = Failure::from(e);
            let rank = group.as_ref().map_or(0, |g| g.rank());
            // One write, so mpirun's forwarding cannot interleave
            // two ranks' lines.
            let line = format!("error: rank {rank}: {msg}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
            if together {
                // Every rank is here: wait until all have printed,
                // or the first to exit could get the others killed
                // before their reason is out.
                if let Some(g) = &group {
                    let _ = g.all_reduce_f64(&mut [0.0]);
                }
            }
            std::process::exit(i32::from(code));
        }
        Err(e) => return Err(e.into()),
    };
    bar.finish();
    if group.as_ref().is_some_and(|g| g.rank() != 0) {
        return Ok(());
    }
    if let Some(d) = &summary.data_parallel {
        println!(
            "data-parallel over {} ranks: {:.1} s in collective calls ({:.1} % of the training's wall time)",
            d.ranks,
            d.collective_seconds,
            100.0 * d.collective_share
        );
    }
    if let Some(v) = summary.validation_accuracy {
        println!("validation accuracy {:.2}%", 100.0 * v);
    }
    if let Some(t) = summary.test_accuracy {
        println!("test accuracy {:.2}%", 100.0 * t);
    }
    println!(
        "{} epochs in {:.1}s ({:.0} samples/s); results in {}",
        summary.epochs,
        summary.train_seconds,
        summary.samples_per_second,
        out.display()
    );
    Ok(())
}

/// The MPI group when started by `mpirun` (a build with `--features mpi`).
#[cfg(feature = "mpi")]
fn mpi_group() -> Result<Option<strata_train::collective::Group>, Failure> {
    let secs = std::env::var("STRATA_MPI_TIMEOUT")
        .ok()
        .map(|v| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    Failure(
                        format!("STRATA_MPI_TIMEOUT is {v:?}, expected seconds > 0"),
                        2,
                    )
                })
        })
        .transpose()?
        .unwrap_or(300.0);
    let group = strata_dist::MpiGroup::init(std::time::Duration::from_secs_f64(secs))
        .map_err(|e| Failure(format!("MPI: {e}"), 1))?;
    Ok(group.map(|g| std::sync::Arc::new(g) as strata_train::collective::Group))
}

/// Without MPI support a launch by `mpirun` would train N unrelated copies
/// into one folder: refuse instead.
#[cfg(not(feature = "mpi"))]
fn mpi_group() -> Result<Option<strata_train::collective::Group>, Failure> {
    let launched = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if launched {
        return Err(Failure(
            "this strata was built without MPI support, so `mpirun` would start unrelated \
             copies: rebuild with `cargo build --release -p strata-cli --features mpi`"
                .into(),
            2,
        ));
    }
    Ok(None)
}
