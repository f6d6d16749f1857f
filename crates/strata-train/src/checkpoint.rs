//! Checkpoints as safetensors files, written atomically (temporary file +
//! rename), so an interrupted write never leaves a half-written checkpoint.

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use strata_tensor::Tensor;
use thiserror::Error;

/// A checkpoint could not be written or read.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// File-system failure.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is not a valid checkpoint, or does not fit the model.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.into(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// flushed to disk, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

/// Saves named f32 tensors with string metadata.
pub fn save_tensors(
    path: &Path,
    tensors: &[(String, Tensor<f32>)],
    metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| {
            t.to_contiguous_slice()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        })
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, t), b)| {
            TensorView::new(Dtype::F32, t.shape().to_vec(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| CheckpointError::Format {
                    path: path.into(),
                    message: format!("tensor {n}: {e}"),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let data =
        safetensors::serialize(views, &Some(metadata)).map_err(|e| CheckpointError::Format {
            path: path.into(),
            message: e.to_string(),
        })?;
    let data = canonical_header(data).map_err(|message| CheckpointError::Format {
        path: path.into(),
        message,
    })?;
    write_atomic(path, &data)
}

/// safetensors writes `__metadata__` from a `HashMap`, whose order changes
/// from process to process, so equal runs wrote files equal in content but
/// not in bytes. The header is rewritten with its keys sorted (serde_json's
/// map is ordered) and padded with spaces to 8 bytes as safetensors pads it;
/// the tensor data and their offsets are unchanged.
fn canonical_header(data: Vec<u8>) -> Result<Vec<u8>, String> {
    let bad = || "safetensors wrote a header it cannot read back".to_string();
    let len: [u8; 8] = data
        .get(..8)
        .ok_or_else(bad)?
        .try_into()
        .map_err(|_| bad())?;
    let n = usize::try_from(u64::from_le_bytes(len)).map_err(|_| bad())?;
    let header = data.get(8..8 + n).ok_or_else(bad)?;
    let value: serde_json::Value = serde_json::from_slice(header).map_err(|_| bad())?;
    let mut h = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + data.len() - 8 - n);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&data[8 + n..]);
    Ok(out)
}

/// What a safetensors error means, in words (the crate's `Display` is its
/// variant name, e.g. `HeaderTooSmall` or `InvalidOffset("layers.1.beta")`).
fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "shorter than the 8-byte header length a safetensors file opens with".into(),
        E::InvalidHeaderLength => "its header length points past the end of the file (truncated?)".into(),
        E::HeaderTooLarge => "its header claims more than 100 MB".into(),
        E::InvalidHeader => "its header is not UTF-8 text".into(),
        E::InvalidHeaderStart => "its header does not start with `{` (not a safetensors file?)".into(),
        E::InvalidHeaderDeserialization | E::JsonError(_) => {
            "its header is not the JSON table of tensors safetensors expects".into()
        }
        E::TensorNotFound(n) => format!("tensor {n} is named but not stored"),
        E::TensorInvalidInfo => "a tensor's shape, dtype and byte range disagree".into(),
        E::InvalidOffset(n) => format!(
            "tensor {n}'s byte range does not follow the previous tensor's (the file is damaged)"
        ),
        E::IoError(e) => e.to_string(),
        E::InvalidTensorView(d, shape, len) => {
            format!("a {d:?} tensor of shape {shape:?} cannot be {len} bytes long")
        }
        E::MetadataIncompleteBuffer => {
            "the tensors' byte ranges do not cover the data part of the file exactly (truncated or extended)".into()
        }
        E::ValidationOverflow => "a tensor's shape overflows when multiplied out".into(),
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}

/// Named tensors and metadata read from a checkpoint or model file.
pub type Loaded = (Vec<(String, Tensor<f32>)>, HashMap<String, String>);

/// Reads a file written by [`save_tensors`].
pub fn load_tensors(path: &Path) -> Result<Loaded, CheckpointError> {
    let buf = std::fs::read(path).map_err(io(path))?;
    load_tensors_from(path, &buf)
}

/// Tensor `name` of a safetensors file as f32 values: refused, with a
/// message naming it, unless it is F32 and finite (a NaN in a running mean
/// or an optimiser's cache would train or evaluate on without a word, and
/// end at chance).
pub(crate) fn decode_f32(
    name: &str,
    v: &safetensors::tensor::TensorView<'_>,
) -> Result<Tensor<f32>, String> {
    if v.dtype() != Dtype::F32 {
        return Err(format!(
            "tensor {name} has dtype {:?}, expected F32",
            v.dtype()
        ));
    }
    let data: Vec<f32> = v
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        return Err(format!(
            "tensor {name} holds a non-finite value ({}) at index {i}; the file is damaged or the run that wrote it diverged",
            data[i]
        ));
    }
    Tensor::from_vec(data, v.shape()).map_err(|e| format!("tensor {name}: {e}"))
}

/// As [`load_tensors`], from the bytes of the file at `path` read already
/// (e.g. by another process and broadcast); `path` names it in errors.
pub fn load_tensors_from(path: &Path, buf: &[u8]) -> Result<Loaded, CheckpointError> {
    let fmt = |message: String| CheckpointError::Format {
        path: path.into(),
        message,
    };
    let (_, meta) = SafeTensors::read_metadata(buf)
        .map_err(|e| fmt(format!("not a readable safetensors file: {}", describe(&e))))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(buf)
        .map_err(|e| fmt(format!("not a readable safetensors file: {}", describe(&e))))?;
    let mut out = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        let v = st
            .tensor(&name)
            .map_err(|e| fmt(format!("tensor {name}: {}", describe(&e))))?;
        let t = decode_f32(&name, &v).map_err(fmt)?;
        out.push((name, t));
    }
    Ok((out, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal tensors and metadata give equal bytes, however the metadata
    /// map happens to be ordered (issue 24, defect 8).
    #[test]
    fn equal_contents_give_equal_files() {
        let dir = std::env::temp_dir().join(format!("strata-canonical-{}", std::process::id()));
        let tensors = vec![
            (
                "b".to_string(),
                Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap(),
            ),
            (
                "a".to_string(),
                Tensor::from_vec(vec![3.0f32], &[1]).unwrap(),
            ),
        ];
        let mut files = Vec::new();
        for i in 0..4 {
            // A new map each time: a new random order of its 12 keys.
            let meta: HashMap<String, String> = (0..12)
                .map(|k| (format!("key{k}"), format!("value {k}")))
                .collect();
            let path = dir.join(format!("m{i}.safetensors"));
            save_tensors(&path, &tensors, meta).unwrap();
            files.push(std::fs::read(&path).unwrap());
        }
        assert!(files.windows(2).all(|w| w[0] == w[1]));
        // Non-finite values are refused on loading, naming the tensor.
        let nan = vec![(
            "m.running_mean".to_string(),
            Tensor::from_vec(vec![0.0f32, f32::NAN], &[2]).unwrap(),
        )];
        let bad = dir.join("nan.safetensors");
        save_tensors(&bad, &nan, HashMap::new()).unwrap();
        let e = load_tensors(&bad).unwrap_err().to_string();
        assert!(
            e.contains("m.running_mean") && e.contains("index 1") && e.contains("nan.safetensors"),
            "{e}"
        );
        let (back, meta) = load_tensors(&dir.join("m0.safetensors")).unwrap();
        assert_eq!(meta.len(), 12);
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].1.to_vec(), vec![3.0]);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Damaged files are described in words naming the file, never by the
    /// safetensors crate's variant names (issue 24, defect 11).
    #[test]
    fn damaged_files_are_described_in_words() {
        let dir = std::env::temp_dir().join(format!("strata-damaged-{}", std::process::id()));
        let t = vec![(
            "layers.1.beta".to_string(),
            Tensor::from_vec(vec![1.0f32; 8], &[8]).unwrap(),
        )];
        let good = dir.join("model.safetensors");
        save_tensors(&good, &t, HashMap::new()).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let cases: [(&str, Vec<u8>, &str); 4] = [
            ("tiny", vec![1, 2, 3], "shorter than the 8-byte header"),
            ("short", bytes[..bytes.len() - 4].to_vec(), "byte ranges"),
            (
                "long-header",
                {
                    let mut b = bytes.clone();
                    b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
                    b
                },
                "header",
            ),
            (
                "not-json",
                {
                    let mut b = bytes.clone();
                    b[8] = b'x';
                    b
                },
                "header",
            ),
        ];
        for (name, b, want) in cases {
            let path = dir.join(format!("{name}.safetensors"));
            std::fs::write(&path, &b).unwrap();
            let e = load_tensors(&path).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{name}.safetensors")) && e.contains(want),
                "{name}: {e}"
            );
            for variant in [
                "HeaderTooSmall",
                "InvalidHeader",
                "MetadataIncompleteBuffer",
                "InvalidOffset",
                "HeaderTooLarge",
                "checkpoint",
            ] {
                assert!(!e.contains(variant), "{name}: {e}");
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
