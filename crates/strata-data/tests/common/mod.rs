//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The shared real data sets (`../shared/data` beside the repository).
pub fn shared_data() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
}

/// A fresh folder under the system temporary folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "strata-data-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a small MNIST-like folder: `n_train` and `n_test` images of `rows × cols`.
pub fn write_mnist_like(
    dir: &Path,
    n_train: usize,
    n_test: usize,
    rows: usize,
    cols: usize,
    gzip: bool,
) {
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let px: Vec<u8> = (0..n * rows * cols).map(|i| (i % 251) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let ext = if gzip { ".gz" } else { "" };
        strata_data::write_idx(
            dir.join(format!("{prefix}-images-idx3-ubyte{ext}")),
            &[n, rows, cols],
            &px,
            gzip,
        )
        .unwrap();
        strata_data::write_idx(
            dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")),
            &[n],
            &labels,
            gzip,
        )
        .unwrap();
    }
}
