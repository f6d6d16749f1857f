//! `strata gradcheck`: backprop checked against finite differences.

use super::data::{eval_options, load_data, network_input};
use super::RunError;
use crate::assemble::build_model;
use crate::spec::Spec;
use std::path::Path;
use strata_autograd::gradcheck::{GradCheckOptions, GradCheckReport};
use strata_nn::{Mode, Sequential};
use strata_tensor::Tensor;

/// `strata gradcheck`: builds the spec's network at f64 and checks backprop
/// against finite differences on a small batch of its training data.
pub fn gradcheck(
    spec: &Spec,
    data_dir: Option<&Path>,
    items: usize,
) -> Result<Vec<GradCheckReport>, RunError> {
    let data = load_data(spec, data_dir)?;
    let image = data.train.image_shape();
    let input = network_input(spec, image)?;
    let mut model: Sequential<f64> = build_model(spec, &input, data.train.num_classes())?;
    let idx: Vec<usize> = (0..items.min(data.train.len())).collect();
    let (mut x, labels) = data.train.batch(&idx)?;
    if let Some(t) = eval_options(spec, image, false)?.transform {
        x = t.apply_batch(&x, 0, 0)?;
    }
    let x64 = Tensor::from_vec(x.to_vec().into_iter().map(f64::from).collect(), x.shape())
        .map_err(|e| RunError::Other(e.to_string()))?;
    let opts = GradCheckOptions {
        max_entries: 20,
        ..GradCheckOptions::default()
    };
    strata_nn::gradcheck::check_module_gradients(
        &mut model,
        &x64,
        &labels,
        spec.optimizer.weight_decay,
        Mode::Train,
        &opts,
    )
    .map_err(|e| RunError::Other(e.to_string()))
}
