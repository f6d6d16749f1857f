//! One module per subcommand: its arguments (`Args`, or the subcommands of
//! `viz` and `data`) and `run`, which carries it out.

pub(crate) mod data;
pub(crate) mod detect;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod gradcheck;
pub(crate) mod import;
pub(crate) mod inspect;
pub(crate) mod sweep;
pub(crate) mod train;
pub(crate) mod viz;

use crate::failure::Failure;
use std::path::{Path, PathBuf};
use strata_train::spec::Spec;

/// The default output folder: `runs/NAME{suffix}`, NAME the spec file's
/// name without `.toml`.
pub(crate) fn default_out(spec: &Path, suffix: &str) -> PathBuf {
    let stem = spec.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
    PathBuf::from("runs").join(format!("{stem}{suffix}"))
}

/// Reads the spec at `path` with the `--set` overrides `sets`; a malformed
/// spec exits with code 2.
pub(crate) fn load_spec(path: &Path, sets: &[String]) -> Result<Spec, Failure> {
    Spec::load_with(path, sets).map_err(|e| Failure(e.to_string(), 2))
}
