//! Saving and restoring a network's parameters by name, and evaluation helpers.

use crate::error::{NnError, Result};
use crate::module::{Ctx, Mode, Module};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::kernels::reduce::argmax_rows;
use strata_autograd::{Real, Tape};
use strata_tensor::Tensor;

/// Every parameter as `(name, tensor)` (views, no copies).
pub fn state_dict<T: Real>(model: &dyn Module<T>) -> Vec<(String, Tensor<T>)> {
    model
        .params()
        .into_iter()
        .map(|(n, p)| (n, p.value.clone()))
        .collect()
}

/// Loads parameters by name. Every parameter of the model must be present with
/// its exact shape, and no unknown names may appear; otherwise nothing changes
/// and the error names the parameter and both shapes.
pub fn load_state_dict<T: Real>(
    model: &mut dyn Module<T>,
    state: &[(String, Tensor<T>)],
) -> Result<()> {
    let params = model.params_mut();
    for (name, p) in &params {
        match state.iter().find(|(n, _)| n == name) {
            None => return Err(NnError::State(format!("parameter {name} is missing"))),
            Some((_, t)) if t.shape() != p.value.shape() => {
                return Err(NnError::State(format!(
                    "parameter {name} has shape {:?} in the saved state, the network expects {:?}",
                    t.shape(),
                    p.value.shape()
                )))
            }
            _ => {}
        }
    }
    if let Some((n, _)) = state
        .iter()
        .find(|(n, _)| !params.iter().any(|(m, _)| m == n))
    {
        return Err(NnError::State(format!(
            "the saved state has parameter {n}, which the network does not"
        )));
    }
    for (name, p) in params {
        if let Some((_, t)) = state.iter().find(|(n, _)| *n == name) {
            p.value = t.contiguous();
        }
    }
    Ok(())
}

/// Number of trainable scalars.
pub fn parameter_count<T: Real>(model: &dyn Module<T>) -> usize {
    model.params().iter().map(|(_, p)| p.value.numel()).sum()
}

/// Class predictions (arg-max of the outputs) for `x` (`[N, …]`), in evaluation
/// mode, `batch` items at a time.
pub fn predict<T: Real>(
    model: &mut dyn Module<T>,
    x: &Tensor<T>,
    batch: usize,
) -> Result<Vec<usize>> {
    let n = x.shape().first().copied().unwrap_or(0);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let end = (start + batch.max(1)).min(n);
        let mut tape = Tape::inference();
        let xi = tape.input(
            x.slice(0, start, end)
                .map_err(strata_autograd::AutogradError::from)?,
        );
        let mut ctx = Ctx::new(Mode::Eval, &mut rng);
        let y = model.forward(&mut tape, xi, &mut ctx)?;
        let v = tape.value(y)?;
        let classes = v.shape().get(1).copied().unwrap_or(1);
        out.extend(argmax_rows(&v.to_contiguous_slice(), end - start, classes));
        start = end;
    }
    Ok(out)
}

/// Fraction of `x`'s items whose predicted class equals the label.
pub fn accuracy<T: Real>(
    model: &mut dyn Module<T>,
    x: &Tensor<T>,
    labels: &[usize],
    batch: usize,
) -> Result<f64> {
    let pred = predict(model, x, batch)?;
    if pred.len() != labels.len() {
        return Err(NnError::Config(format!(
            "{} items but {} labels",
            pred.len(),
            labels.len()
        )));
    }
    let right = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    Ok(right as f64 / labels.len().max(1) as f64)
}
