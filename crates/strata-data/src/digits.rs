//! The UCI optical recognition of handwritten digits, embedded in the library.
//!
//! 1,797 grey images of 8×8 pixels with values `0..=16`, labels `0`–`9`
//! (E. Alpaydin, C. Kaynak, 1998; UCI Machine Learning Repository; CC BY 4.0 —
//! see `data/DIGITS-LICENSE.md`). Small enough to train on in a unit test.

use crate::dataset::{Dataset, TrainTest};
use crate::error::{DataError, Result};
use crate::idx::MNIST_CLASSES;
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

/// The embedded file: `digits.csv.gz`, one image a line, 64 comma-separated
/// pixel values (row-major) then the label.
pub const DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// Number of images in the embedded digits data set.
pub const DIGITS_LEN: usize = 1797;

/// Number of images [`digits_split`] puts in the test set: every sixth image
/// of each class.
pub const DIGITS_TEST_LEN: usize = 296;

/// [`digits_split`] sends the `k`-th image of each class to the test set when
/// `k % DIGITS_TEST_EVERY == DIGITS_TEST_EVERY - 1`.
const DIGITS_TEST_EVERY: usize = 6;

/// Parses digits CSV text (as in `digits.csv.gz`, gzipped or not): each non-empty
/// line holds 64 pixel values in `0..=16` and a label in `0..=9`. `origin` names
/// the source in error messages.
pub fn parse_digits_csv(bytes: &[u8], origin: &Path) -> Result<Dataset> {
    let text;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| DataError::io(origin, e))?;
        text = out;
        &text[..]
    } else {
        bytes
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|e| DataError::format(origin, format!("expected UTF-8 text: {e}")))?;
    let mut pixels = Vec::with_capacity(DIGITS_LEN * 64);
    let mut labels = Vec::with_capacity(DIGITS_LEN);
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |m: String| DataError::format(origin, format!("line {}: {m}", lineno + 1));
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 65 {
            return Err(bad(format!(
                "expected 65 comma-separated values (64 pixels and a label), found {}",
                fields.len()
            )));
        }
        for (k, f) in fields.iter().enumerate() {
            let v: u8 = f
                .trim()
                .parse()
                .map_err(|_| bad(format!("value {} is `{f}`, expected an integer", k + 1)))?;
            let max = if k < 64 { 16 } else { 9 };
            if v > max {
                return Err(bad(format!(
                    "value {} is {v}, expected at most {max}",
                    k + 1
                )));
            }
            if k < 64 {
                pixels.push(v);
            } else {
                labels.push(v as usize);
            }
        }
    }
    let n = labels.len();
    Dataset::from_u8(
        pixels,
        [n, 1, 8, 8],
        labels,
        MNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
        16.0,
    )
}

/// The 1,797 embedded UCI digits, in file order: shape `[1797, 1, 8, 8]`, pixels
/// `0..=16` (tensors divide them by 16), class names `"0"` to `"9"`.
pub fn digits() -> Dataset {
    static DIGITS: OnceLock<Dataset> = OnceLock::new();
    DIGITS
        .get_or_init(|| {
            parse_digits_csv(DIGITS_CSV_GZ, Path::new("<embedded digits.csv.gz>"))
                .expect("the embedded digits file is valid (checked by the tests)")
        })
        .clone()
}

/// The fixed train/test split of the embedded digits: within each class, every
/// sixth image (in file order) goes to test — [`DIGITS_TEST_LEN`] = 296 images,
/// 29 or 30 a class — and the other 1,501 to train. The file is ordered roughly
/// by writer, so a contiguous cut (say, the last 297 rows) would test on writers
/// never seen in training, a harder task than the usual random split (a linear
/// model scores ~91 % there against ~95 % here). The stratified interleave
/// spreads writers and classes over both parts like a random split and needs no
/// seed. Use [`Dataset::split_validation`] on the training part for a random
/// validation set.
pub fn digits_split() -> TrainTest {
    let all = digits();
    let mut seen = [0usize; 10];
    let (test, train): (Vec<usize>, Vec<usize>) = (0..all.len()).partition(|&i| {
        let c = &mut seen[all.labels()[i]];
        *c += 1;
        *c % DIGITS_TEST_EVERY == 0
    });
    debug_assert_eq!(test.len(), DIGITS_TEST_LEN);
    TrainTest {
        train: all.select(&train).expect("in range"),
        test: all.select(&test).expect("in range"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_digits() {
        let d = digits();
        assert_eq!(d.shape(), [1797, 1, 8, 8]);
        assert_eq!(d.num_classes(), 10);
        let counts = d.class_counts();
        assert_eq!(counts.iter().sum::<usize>(), 1797);
        assert!(
            counts.iter().all(|&c| (170..=190).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(d.labels()[0], 0);
        assert_eq!(d.labels()[1], 1);
        let t = d.to_tensor().unwrap();
        let v = t.to_vec();
        assert_eq!(v[2], 5.0 / 16.0);
        assert!(v.iter().all(|&x| (0.0..=1.0).contains(&x)));
        assert!(v.contains(&1.0));
        let s = digits_split();
        assert_eq!((s.train.len(), s.test.len()), (1501, DIGITS_TEST_LEN));
        // Stratified: each class sends a sixth of its images to test.
        for (c, (&t, &n)) in s.test.class_counts().iter().zip(&counts).enumerate() {
            assert_eq!(t, n / 6, "class {c}");
        }
    }

    #[test]
    fn bad_csv() {
        let p = Path::new("x.csv");
        let line = |n: usize, last: &str| {
            let mut v = vec!["1"; n];
            v.push(last);
            v.join(",")
        };
        assert!(parse_digits_csv(line(64, "3").as_bytes(), p).is_ok());
        for bad in [
            line(63, "3"),
            line(64, "10"),
            line(64, "x"),
            line(63, "17,3"),
        ] {
            let e = parse_digits_csv(bad.as_bytes(), p).unwrap_err().to_string();
            assert!(e.starts_with("x.csv: line 1:"), "{e}");
        }
        assert!(parse_digits_csv(&[0x1f, 0x8b, 0, 0], p).is_err());
    }
}
