//! The IDX format of MNIST and Fashion-MNIST, plain or gzipped.
//!
//! An IDX file is a big-endian header — two zero bytes, a type byte (`0x08` for
//! unsigned bytes, the only type these data sets use), the number of dimensions —
//! then one big-endian `u32` per dimension, then the values in row-major order.
//! Images files have magic `0x00000803` (`N × rows × cols`), labels files
//! `0x00000801` (`N`). Gzipped files are recognised by their first two bytes,
//! `1f 8b`, whatever their name.

use crate::dataset::{Dataset, TrainTest};
use crate::error::{DataError, Result};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Magic number of an IDX file of `u8` images, `N × rows × cols`.
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `u8` labels, `N`.
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// The class names of MNIST: the digits `"0"` to `"9"`.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
/// The class names of Fashion-MNIST, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The contents of an IDX file of bytes: its dimensions and row-major values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The `dims.iter().product()` values.
    pub data: Vec<u8>,
}

fn magic_name(magic: u32) -> &'static str {
    match magic {
        IDX_IMAGES_MAGIC => "IDX images",
        IDX_LABELS_MAGIC => "IDX labels",
        _ => "IDX",
    }
}

/// Reads exactly `buf.len()` bytes, or reports how many the file held.
fn read_full(r: &mut impl Read, buf: &mut [u8], path: &Path, offset: u64) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(DataError::Truncated {
                    path: path.into(),
                    expected: offset + buf.len() as u64,
                    found: offset + got as u64,
                })
            }
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
    Ok(())
}

/// Deflate cannot expand data by more than about 1032 to 1: a gzipped file of
/// `n` bytes decompresses to at most this many times `n` bytes.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Reads an IDX file of bytes, plain or gzipped.
///
/// With `expected_magic`, a file with another magic number is refused. A header
/// that declares more data than the file can hold is refused with
/// [`DataError::DeclaredTooLarge`] before the data is allocated (for a gzipped
/// file, "can hold" is the most that deflate can expand its compressed size to,
/// and the buffer then grows only as decompressed bytes arrive). A file shorter
/// than its header says is [`DataError::Truncated`]; one with bytes after the data
/// is a format error.
pub fn read_idx(path: impl AsRef<Path>, expected_magic: Option<u32>) -> Result<IdxArray> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let head = {
        use std::io::BufRead;
        reader.fill_buf().map_err(|e| DataError::io(path, e))?
    };
    let gzipped = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    if gzipped {
        let bound = file_len
            .saturating_mul(MAX_DEFLATE_RATIO)
            .saturating_add(1024);
        read_idx_from(
            MultiGzDecoder::new(reader),
            path,
            bound,
            false,
            expected_magic,
        )
    } else {
        read_idx_from(reader, path, file_len, true, expected_magic)
    }
}

/// Reads an IDX stream whose total size is at most `max_len` (exactly, when
/// `exact`, for an uncompressed file); headers declaring more are refused before
/// allocating.
fn read_idx_from(
    mut r: impl Read,
    path: &Path,
    max_len: u64,
    exact: bool,
    expected_magic: Option<u32>,
) -> Result<IdxArray> {
    let mut magic = [0u8; 4];
    read_full(&mut r, &mut magic, path, 0)?;
    let found = u32::from_be_bytes(magic);
    if let Some(expected) = expected_magic {
        if found != expected {
            return Err(DataError::BadMagic {
                path: path.into(),
                what: magic_name(expected),
                expected,
                found,
            });
        }
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DataError::BadMagic {
            path: path.into(),
            what: "IDX: two zero bytes, type, rank",
            expected: 0x0000_0800 | magic[3] as u32,
            found,
        });
    }
    if magic[2] != 0x08 {
        return Err(DataError::format(
            path,
            format!(
                "IDX element type {:#04x} is not supported: expected 0x08 (unsigned byte)",
                magic[2]
            ),
        ));
    }
    let rank = magic[3] as usize;
    let mut dim_bytes = vec![0u8; rank * 4];
    read_full(&mut r, &mut dim_bytes, path, 4)?;
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let header = 4 + 4 * rank as u64;
    let declared = dims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    let available = max_len.saturating_sub(header);
    if declared > available {
        return Err(DataError::DeclaredTooLarge {
            path: path.into(),
            declared,
            available: if exact { available } else { max_len },
        });
    }
    let declared_usize = usize::try_from(declared).map_err(|_| DataError::DeclaredTooLarge {
        path: path.into(),
        declared,
        available: max_len,
    })?;
    // Grow with the data actually read: never trust the header for the allocation
    // of a stream whose length is unknown.
    let mut data = Vec::with_capacity(declared_usize.min(1 << 24));
    let got = match (&mut r).take(declared).read_to_end(&mut data) {
        Ok(k) => k,
        // A gzip stream cut short: what was decompressed so far is in `data`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => data.len(),
        Err(e) => return Err(DataError::io(path, e)),
    };
    if (got as u64) < declared {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: header + declared,
            found: header + got as u64,
        });
    }
    let mut extra = [0u8; 1];
    let more = loop {
        match r.read(&mut extra) {
            Ok(k) => break k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    };
    if more > 0 {
        if let Some(k) = dims.iter().position(|&d| d == 0) {
            return Err(DataError::format(
                path,
                format!(
                    "IDX dimension {k} of {dims:?} is 0, so the header declares no values, but data follow it; expected at least one item along each dimension"
                ),
            ));
        }
        return Err(DataError::format(
            path,
            format!(
                "expected {} bytes ({dims:?} values after the header), found more",
                header + declared
            ),
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Writes an IDX file of bytes (gzipped if `gzip`), the inverse of [`read_idx`].
pub fn write_idx(path: impl AsRef<Path>, dims: &[usize], data: &[u8], gzip: bool) -> Result<()> {
    let path = path.as_ref();
    let invalid = |m: String| DataError::Invalid(format!("{}: {m}", path.display()));
    if dims.len() > 255 {
        return Err(invalid(format!("rank {} exceeds 255", dims.len())));
    }
    if dims.iter().product::<usize>() != data.len() {
        return Err(invalid(format!(
            "dims {dims:?} do not match {} values",
            data.len()
        )));
    }
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| invalid(format!("dimension {d} exceeds u32")))?;
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let io = |e| DataError::io(path, e);
    let mut f = File::create(path).map_err(io)?;
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        enc.write_all(&bytes).map_err(io)?;
        enc.finish().map_err(io)?;
    } else {
        f.write_all(&bytes).map_err(io)?;
    }
    Ok(())
}

/// Reads an IDX images file and its labels file into a [`Dataset`] of shape
/// `[N, 1, rows, cols]`, `u8` pixels scaled by 255.
///
/// Fails if the counts disagree or a label is not below `class_names.len()`.
pub fn load_idx_pair(
    images_path: impl AsRef<Path>,
    labels_path: impl AsRef<Path>,
    class_names: &[&str],
) -> Result<Dataset> {
    let (ip, lp) = (images_path.as_ref(), labels_path.as_ref());
    let images = read_idx(ip, Some(IDX_IMAGES_MAGIC))?;
    let labels = read_idx(lp, Some(IDX_LABELS_MAGIC))?;
    let (n, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
    if labels.dims[0] != n {
        return Err(DataError::CountMismatch {
            images_path: ip.into(),
            images: n,
            labels_path: lp.into(),
            labels: labels.dims[0],
        });
    }
    if let Some((i, &l)) = labels
        .data
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= class_names.len())
    {
        return Err(DataError::format(
            lp,
            format!(
                "label {i} is {l}, expected a class index below {}",
                class_names.len()
            ),
        ));
    }
    Dataset::from_u8(
        images.data,
        [n, 1, rows, cols],
        labels.data.iter().map(|&l| l as usize).collect(),
        class_names.iter().map(|s| s.to_string()).collect(),
        255.0,
    )
}

/// `dir/<stem>.gz` if it exists, else `dir/<stem>`, else `dir/<stem with the
/// last '-' as '.'>` (the spelling of some mirrors), else an error.
pub(crate) fn find_idx_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let dotted = match stem.rfind('-') {
        Some(i) => format!("{}.{}", &stem[..i], &stem[i + 1..]),
        None => stem.to_string(),
    };
    for name in [
        format!("{stem}.gz"),
        stem.to_string(),
        format!("{dotted}.gz"),
        dotted,
    ] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::format(
        dir,
        format!("expected {stem}.gz or {stem}, found neither"),
    ))
}

/// Whether `dir` holds an MNIST-like set of IDX files.
pub(crate) fn is_mnist_like_dir(dir: &Path) -> bool {
    find_idx_file(dir, "train-images-idx3-ubyte").is_ok()
}

/// Reads an MNIST-like folder — `train-images-idx3-ubyte[.gz]`,
/// `train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`,
/// `t10k-labels-idx1-ubyte[.gz]` — into train and test sets with the class
/// names `"0"` to `"9"`.
pub fn load_mnist_like(dir: impl AsRef<Path>) -> Result<TrainTest> {
    load_mnist_like_with(dir.as_ref(), &MNIST_CLASSES)
}

/// [`load_mnist_like`] with Fashion-MNIST's class names.
pub fn load_fashion_mnist(dir: impl AsRef<Path>) -> Result<TrainTest> {
    load_mnist_like_with(dir.as_ref(), &FASHION_MNIST_CLASSES)
}

fn load_mnist_like_with(dir: &Path, classes: &[&str]) -> Result<TrainTest> {
    let f = |stem| find_idx_file(dir, stem);
    let (tri, trl) = (f("train-images-idx3-ubyte")?, f("train-labels-idx1-ubyte")?);
    let (tei, tel) = (f("t10k-images-idx3-ubyte")?, f("t10k-labels-idx1-ubyte")?);
    let (train, test) = rayon::join(
        || load_idx_pair(&tri, &trl, classes),
        || load_idx_pair(&tei, &tel, classes),
    );
    Ok(TrainTest {
        train: train?,
        test: test?,
    })
}
