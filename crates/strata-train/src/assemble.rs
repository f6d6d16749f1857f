//! Assembling a network from a spec, checking every shape before training.

use crate::spec::{LayerSpec, Spec, SpecError};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::Real;
use strata_nn::{Dropout, Flatten, Linear, Module, Relu, Sequential};

/// One row of the layer table `strata inspect` prints.
#[derive(Clone, Debug)]
pub struct LayerRow {
    /// Parameter-name prefix, e.g. `layers.3`.
    pub path: String,
    /// Description, e.g. `linear 784→1024`.
    pub kind: String,
    /// Per-sample output shape.
    pub output: Vec<usize>,
    /// Trainable scalars.
    pub parameters: usize,
    /// Multiply-accumulates per sample.
    pub flops: u64,
}

/// Builds the spec's network for per-sample input shape `input` (e.g.
/// `[1, 28, 28]`) and `classes` outputs, initialised from `seed`. Every layer's
/// shape is checked first; an error names the layer's index, line and shapes.
pub fn build_model<T: Real>(
    spec: &Spec,
    input: &[usize],
    classes: usize,
) -> Result<Sequential<T>, SpecError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.train.seed);
    let mut net = Sequential::new();
    let mut shape = input.to_vec();
    for (i, (layer, &line)) in spec.layers.iter().zip(&spec.layer_lines).enumerate() {
        let err = |message: String| SpecError {
            file: spec.file.clone(),
            line: Some(line),
            field: format!("model.layers[{i}] ({})", layer.kind()),
            message,
        };
        let module: Box<dyn Module<T>> = match layer {
            LayerSpec::Linear { out } => {
                if shape.len() != 1 {
                    return Err(err(format!(
                        "a linear layer takes a vector per sample, but the previous layer gives shape {shape:?}; add \"flatten\" before it"
                    )));
                }
                Box::new(Linear::new(shape[0], *out, &mut rng).map_err(|e| err(e.to_string()))?)
            }
            LayerSpec::Relu => Box::new(Relu),
            LayerSpec::Dropout { p } => Box::new(Dropout::new(*p).map_err(|e| err(e.to_string()))?),
            LayerSpec::Flatten => Box::new(Flatten),
        };
        shape = module
            .output_shape(&shape)
            .map_err(|e| err(format!("input shape {shape:?} does not fit: {e}")))?;
        net.push_boxed(module);
    }
    if shape != [classes] {
        return Err(SpecError {
            file: spec.file.clone(),
            line: spec.layer_lines.last().copied(),
            field: format!("model.layers[{}]", spec.layers.len() - 1),
            message: format!("the network must end with one output per class ({classes}), but it gives shape {shape:?}"),
        });
    }
    Ok(net)
}

/// The layer table of a built network.
pub fn layer_table<T: Real>(net: &Sequential<T>, input: &[usize]) -> Vec<LayerRow> {
    let mut rows = Vec::new();
    let mut shape = input.to_vec();
    for (i, l) in net.layers().iter().enumerate() {
        let flops = l.flops(&shape);
        shape = l.output_shape(&shape).unwrap_or_default();
        rows.push(LayerRow {
            path: format!("layers.{i}"),
            kind: l.describe(),
            output: shape.clone(),
            parameters: l.params().iter().map(|(_, p)| p.value.numel()).sum(),
            flops,
        });
    }
    rows
}
