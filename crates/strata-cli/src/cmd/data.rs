//! `strata data`: where the data sets are found, and fetching them.

use crate::failure::Failure;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum DataAction {
    /// List the known data sets and where each is found.
    List {
        /// Look in this folder first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Download a data set into ~/.cache/strata (checksums verified).
    Fetch {
        /// Data set name (mnist, fashion-mnist, cifar10).
        name: String,
    },
}

/// Runs `strata data ACTION`.
pub(crate) fn run(action: DataAction) -> Result<(), Failure> {
    match action {
        DataAction::List { data_dir } => {
            for name in ["digits", "mnist", "fashion-mnist", "cifar10"] {
                match strata_train::data::resolve(name, data_dir.as_deref()) {
                    Ok(r) => {
                        let at = r.path.map_or("embedded in the library".into(), |p| {
                            p.display().to_string()
                        });
                        println!("{name:<14} {at} ({:?})", r.layout);
                    }
                    Err(e) => println!("{name:<14} not found: {e}"),
                }
            }
            Ok(())
        }
        DataAction::Fetch { name } => {
            let remote = strata_train::data::official_remote(&name)
                .ok_or_else(|| Failure(format!("no download address is known for {name:?}"), 2))?;
            let cache = strata_train::data::Resolver::from_env(None)
                .cache_dir
                .ok_or_else(|| Failure("no cache folder: set HOME or STRATA_DATA".into(), 1))?;
            let path = strata_train::data::download(&remote, &cache)
                .map_err(|e| Failure(e.to_string(), 1))?;
            println!("{name} is in {}", path.display());
            Ok(())
        }
    }
}
