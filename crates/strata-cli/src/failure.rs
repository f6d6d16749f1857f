//! Errors as the message printed and the exit code: 2 for a malformed spec
//! or command line, 130 when interrupted, 1 otherwise.

use strata_train::data::DataError;
use strata_train::run::RunError;

/// An error and the exit code it maps to.
pub(crate) struct Failure(pub(crate) String, pub(crate) u8);

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        if let RunError::EveryRank(inner) = e {
            return Failure::from(*inner);
        }
        let code = match e {
            RunError::Spec(_) | RunError::Usage(_) => 2,
            // 128 + SIGINT, as a shell reports a process stopped by Ctrl-C.
            RunError::Interrupted(_) => 130,
            _ => 1,
        };
        let hint = match &e {
            RunError::Data(d) => data_hint(d),
            _ => String::new(),
        };
        Failure(format!("{e}{hint}"), code)
    }
}

impl From<DataError> for Failure {
    fn from(e: DataError) -> Self {
        let hint = data_hint(&e);
        Failure(format!("{e}{hint}"), 1)
    }
}

/// For a named data set that was not found, the two ways to point strata at
/// a folder that holds it (the library's message lists where it looked).
fn data_hint(e: &DataError) -> String {
    match e {
        DataError::NotFound { name, .. } if !name.contains(['/', '\\']) => format!(
            "\nhint: pass the folder that holds `{name}/` with --data-dir DIR, or set STRATA_DATA=DIR"
        ),
        _ => String::new(),
    }
}
