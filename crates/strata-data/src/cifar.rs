//! The official CIFAR-10 binary layout.
//!
//! `data_batch_1.bin` … `data_batch_5.bin` (training, 10,000 images each) and
//! `test_batch.bin`: records of 1 label byte and 3,072 pixel bytes — the 32×32
//! red plane, then green, then blue (CHW) — with nothing between records.

use crate::dataset::{Dataset, TrainTest};
use crate::error::{DataError, Result};
use std::path::{Path, PathBuf};

/// The CIFAR-10 class names, in label order (which is also alphabetical).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Bytes in one CIFAR-10 record: a label and a 3×32×32 image.
pub const CIFAR10_RECORD_LEN: usize = 1 + 3 * 32 * 32;

/// The training files of the binary layout, in order.
pub const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// The test file of the binary layout.
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";

/// Parses CIFAR-10 records; `path` names the source in errors.
pub fn parse_cifar10_batch(bytes: &[u8], path: &Path) -> Result<Dataset> {
    if bytes.is_empty() {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: CIFAR10_RECORD_LEN as u64,
            found: 0,
        });
    }
    if !bytes.len().is_multiple_of(CIFAR10_RECORD_LEN) {
        let whole = bytes.len() / CIFAR10_RECORD_LEN;
        return Err(DataError::Truncated {
            path: path.into(),
            expected: ((whole + 1) * CIFAR10_RECORD_LEN) as u64,
            found: bytes.len() as u64,
        });
    }
    let n = bytes.len() / CIFAR10_RECORD_LEN;
    let mut pixels = Vec::with_capacity(n * (CIFAR10_RECORD_LEN - 1));
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(CIFAR10_RECORD_LEN).enumerate() {
        if rec[0] >= 10 {
            return Err(DataError::format(
                path,
                format!(
                    "record {i} (byte offset {}) has label {}, expected 0..=9",
                    i * CIFAR10_RECORD_LEN,
                    rec[0]
                ),
            ));
        }
        labels.push(rec[0] as usize);
        pixels.extend_from_slice(&rec[1..]);
    }
    Dataset::from_u8(
        pixels,
        [n, 3, 32, 32],
        labels,
        CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
        255.0,
    )
}

/// Reads one CIFAR-10 binary batch file.
///
/// A file whose length is not a positive multiple of 3,073 bytes is
/// [`DataError::Truncated`]; a label above 9 is a format error.
pub fn read_cifar10_batch(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_cifar10_batch(&bytes, path)
}

/// The folder that holds the binary batches: `dir` itself or the
/// `cifar-10-batches-bin` folder of the official archive inside it.
pub(crate) fn cifar10_binary_dir(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("cifar-10-batches-bin")]
        .into_iter()
        .find(|d| d.join(CIFAR10_TRAIN_FILES[0]).is_file())
}

/// Reads the CIFAR-10 binary layout in `dir` (or in `dir/cifar-10-batches-bin`):
/// the five training batches, in order, and the test batch.
pub fn load_cifar10_binary(dir: impl AsRef<Path>) -> Result<TrainTest> {
    let dir = dir.as_ref();
    let base = cifar10_binary_dir(dir).ok_or_else(|| {
        DataError::format(
            dir,
            format!(
                "expected {} (CIFAR-10 binary layout), found none",
                CIFAR10_TRAIN_FILES[0]
            ),
        )
    })?;
    let mut paths: Vec<PathBuf> = CIFAR10_TRAIN_FILES.iter().map(|f| base.join(f)).collect();
    paths.push(base.join(CIFAR10_TEST_FILE));
    let mut parts = {
        use rayon::prelude::*;
        paths
            .par_iter()
            .map(read_cifar10_batch)
            .collect::<Vec<Result<Dataset>>>()
            .into_iter()
            .collect::<Result<Vec<Dataset>>>()?
    };
    let test = parts.pop().expect("six parts");
    Ok(TrainTest {
        train: Dataset::concat(&parts)?,
        test,
    })
}
