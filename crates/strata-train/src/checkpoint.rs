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
    write_atomic(path, &data)
}

/// Named tensors and metadata read from a checkpoint.
pub type Loaded = (Vec<(String, Tensor<f32>)>, HashMap<String, String>);

/// Reads a file written by [`save_tensors`].
pub fn load_tensors(path: &Path) -> Result<Loaded, CheckpointError> {
    let buf = std::fs::read(path).map_err(io(path))?;
    let fmt = |message: String| CheckpointError::Format {
        path: path.into(),
        message,
    };
    let (_, meta) = SafeTensors::read_metadata(&buf)
        .map_err(|e| fmt(format!("not a safetensors checkpoint: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&buf)
        .map_err(|e| fmt(format!("not a safetensors checkpoint: {e}")))?;
    let mut out = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        let v = st
            .tensor(&name)
            .map_err(|e| fmt(format!("tensor {name}: {e}")))?;
        if v.dtype() != Dtype::F32 {
            return Err(fmt(format!(
                "tensor {name} has dtype {:?}, expected F32",
                v.dtype()
            )));
        }
        let data: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let t =
            Tensor::from_vec(data, v.shape()).map_err(|e| fmt(format!("tensor {name}: {e}")))?;
        out.push((name, t));
    }
    Ok((out, metadata))
}
