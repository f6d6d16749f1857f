//! `strata import SPEC STATE.safetensors --out MODEL_DIR`: a PyTorch state
//! dict (saved with `safetensors.torch.save_file`) loaded into the network a
//! spec describes, written as a strata model folder that `strata eval` and
//! `strata export` take.
//!
//! Names are mapped layer by layer. strata's `layers.<i>.<rest>` is looked up
//! in the file as itself, then as `<i>.<rest>` (an `nn.Sequential` of the
//! same layers in the same order), and `gamma`/`beta` also as PyTorch's
//! `weight`/`bias`. Layouts are PyTorch's own: linear `[out, in]`,
//! convolution `[out, in, kh, kw]`. A tensor that is missing or misshapen is
//! an error naming it. So is one in the file that nothing takes, except
//! batch norm's `num_batches_tracked`.

use std::collections::HashMap;
use std::path::Path;

use strata_nn::{load_state_dict, state_dict, Sequential};
use strata_tensor::Tensor;

use crate::run::{network_input, save_model, RunError};
use crate::spec::Spec;

/// What [`import`] did.
#[derive(Clone, Debug)]
pub struct Imported {
    /// strata's tensor names, each with the file's name it came from.
    pub mapped: Vec<(String, String)>,
    /// The file's tensors left out (`num_batches_tracked`).
    pub ignored: Vec<String>,
}

/// The names a strata tensor may have in a PyTorch state dict, in order.
fn candidates(name: &str) -> Vec<String> {
    let mut out = vec![name.to_string()];
    let bare = name.strip_prefix("layers.").unwrap_or(name);
    out.push(bare.to_string());
    for (ours, theirs) in [(".gamma", ".weight"), (".beta", ".bias")] {
        if let Some(stem) = name.strip_suffix(ours) {
            out.push(format!("{stem}{theirs}"));
            let b = stem.strip_prefix("layers.").unwrap_or(stem);
            out.push(format!("{b}{theirs}"));
        }
    }
    out
}

/// Tensors under their names.
type Named = Vec<(String, Tensor<f32>)>;

/// The float tensors of a PyTorch state dict file, and the names of the
/// `num_batches_tracked` counters left out (int64 in PyTorch's files).
fn read_state(path: &Path) -> Result<(Named, Vec<String>), RunError> {
    use safetensors::SafeTensors;
    let bad = |m: String| RunError::Other(format!("{}: {m}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    let (mut out, mut ignored) = (Vec::new(), Vec::new());
    for name in names {
        if name.ends_with("num_batches_tracked") {
            ignored.push(name);
            continue;
        }
        let v = st
            .tensor(&name)
            .map_err(|e| bad(format!("tensor {name}: {e}")))?;
        // PyTorch saves float32 after `model.float()`.
        let t = crate::checkpoint::decode_f32(&name, &v).map_err(bad)?;
        out.push((name, t));
    }
    Ok((out, ignored))
}

/// Loads `state` into `spec`'s network and writes `out/spec.toml` and
/// `out/model.safetensors`.
pub fn import(
    spec: &Spec,
    state: &Path,
    data_dir: Option<&Path>,
    out: &Path,
) -> Result<Imported, RunError> {
    if !spec.preprocess.is_empty() {
        return Err(RunError::Other(format!(
            "{}: data.preprocess is fitted on strata's side, so an imported network would \
             see other inputs than it was trained on; import takes specs without it",
            spec.file.display()
        )));
    }
    let test = crate::run::load_raw(spec, data_dir)?.test;
    let raw = test.image_shape();
    let input = network_input(spec, raw)?;
    let mut model: Sequential<f32> = crate::build_model(spec, &input, test.num_classes())?;
    let (tensors, ignored) = read_state(state)?;
    let theirs: HashMap<&str, &Tensor<f32>> =
        tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut used = std::collections::HashSet::new();
    let mut mapped = Vec::new();
    let mut loaded = Vec::new();
    for (name, ours) in state_dict(&model) {
        let names = candidates(&name);
        let found = names.iter().find(|n| theirs.contains_key(n.as_str()));
        let Some(from) = found else {
            return Err(RunError::Other(format!(
                "{}: no tensor for {name} (looked for {})",
                state.display(),
                names.join(", ")
            )));
        };
        let t = theirs[from.as_str()];
        if t.shape() != ours.shape() {
            return Err(RunError::Other(format!(
                "{}: {from} has shape {:?}, but the spec's {name} is {:?}",
                state.display(),
                t.shape(),
                ours.shape()
            )));
        }
        used.insert(from.clone());
        mapped.push((name.clone(), from.clone()));
        loaded.push((name, (*t).clone()));
    }
    let unused: Vec<String> = tensors
        .iter()
        .filter(|(n, _)| !used.contains(n))
        .map(|(n, _)| n.clone())
        .collect();
    if !unused.is_empty() {
        return Err(RunError::Other(format!(
            "{}: the spec's network has no place for {} (its layers differ from the \
             file's)",
            state.display(),
            unused.join(", ")
        )));
    }
    load_state_dict(&mut model, &loaded).map_err(|e| RunError::Other(e.to_string()))?;
    std::fs::create_dir_all(out).map_err(|e| RunError::Other(format!("{}: {e}", out.display())))?;
    crate::checkpoint::write_atomic(&out.join("spec.toml"), spec.source.as_bytes())?;
    save_model(&out.join("model.safetensors"), &model, None, spec, 0)?;
    Ok(Imported { mapped, ignored })
}
