//! `strata export`: a trained model as an ONNX file or a PyTorch module.

use crate::failure::Failure;
use std::path::PathBuf;

/// The arguments of `strata export` (its help is the doc comment of
/// `Command::Export` in main.rs).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// A folder written by `strata train`.
    model_dir: PathBuf,
    /// The ONNX file to write.
    #[arg(long, value_name = "FILE", required_unless_present = "torch")]
    onnx: Option<PathBuf>,
    /// A PyTorch module definition (model.py) to write, whose
    /// `load_state_dict` takes model.safetensors as it is.
    #[arg(long, value_name = "FILE")]
    torch: Option<PathBuf>,
    /// Look for the data set (its image shape and classes) here first.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Runs `strata export`.
pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let Args {
        model_dir,
        onnx,
        torch,
        data_dir,
    } = args;
    if let Some(onnx) = onnx {
        let e = strata_train::onnx::export_dir(&model_dir, data_dir.as_deref())?;
        strata_train::checkpoint::write_atomic(&onnx, &e.bytes)
            .map_err(|err| Failure(err.to_string(), 1))?;
        let [c, h, w] = e.input;
        println!(
            "wrote {} ({} bytes, {} nodes): input `image` [batch, {c}, {h}, {w}] \
             (pixels scaled to [0, 1]), output `logits` [batch, {}]",
            onnx.display(),
            e.bytes.len(),
            e.nodes,
            e.classes
        );
    }
    if let Some(torch) = torch {
        let py = strata_train::torch::export_torch_dir(&model_dir, data_dir.as_deref())?;
        strata_train::checkpoint::write_atomic(&torch, py.as_bytes())
            .map_err(|err| Failure(err.to_string(), 1))?;
        println!(
            "wrote {}: `Net().load_state_dict(safetensors.torch.load_file(\"{}\"))` \
             loads the weights",
            torch.display(),
            model_dir.join("model.safetensors").display()
        );
    }
    Ok(())
}
