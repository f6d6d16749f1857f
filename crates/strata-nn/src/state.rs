//! Saving and restoring a network's parameters by name, and evaluation helpers.

use crate::error::{NnError, Result};
use crate::module::{Ctx, Mode, Module};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::kernels::reduce::argmax_rows;
use strata_autograd::{Real, Tape};
use strata_tensor::Tensor;

/// Every parameter, then every buffer (batch-norm running statistics), as
/// `(name, tensor)` (views, no copies).
pub fn state_dict<T: Real>(model: &dyn Module<T>) -> Vec<(String, Tensor<T>)> {
    let mut out: Vec<(String, Tensor<T>)> = model
        .params()
        .into_iter()
        .map(|(n, p)| (n, p.value.clone()))
        .collect();
    out.extend(model.buffers().into_iter().map(|(n, b)| (n, b.clone())));
    out
}

/// Loads parameters and buffers (running statistics) by name. Every entry of
/// the model must be present with its exact shape, and no unknown names may
/// appear; otherwise nothing changes and the error names the entry and both
/// shapes.
pub fn load_state_dict<T: Real>(
    model: &mut dyn Module<T>,
    state: &[(String, Tensor<T>)],
) -> Result<()> {
    // Validate everything first, so a bad state leaves the model untouched.
    let mut expected: Vec<(String, Vec<usize>, &str)> = model
        .params()
        .into_iter()
        .map(|(n, p)| (n, p.value.shape().to_vec(), "parameter"))
        .collect();
    expected.extend(
        model
            .buffers()
            .into_iter()
            .map(|(n, b)| (n, b.shape().to_vec(), "buffer")),
    );
    for (name, shape, kind) in &expected {
        match state.iter().find(|(n, _)| n == name) {
            None => return Err(NnError::State(format!("{kind} {name} is missing"))),
            Some((_, t)) if t.shape() != shape.as_slice() => {
                return Err(NnError::State(format!(
                "{kind} {name} has shape {:?} in the saved state, the network expects {shape:?}",
                t.shape()
            )))
            }
            _ => {}
        }
    }
    if let Some((n, _)) = state
        .iter()
        .find(|(n, _)| !expected.iter().any(|(m, _, _)| m == n))
    {
        return Err(NnError::State(format!(
            "the saved state has parameter {n}, which the network does not"
        )));
    }
    let find = |name: &str| {
        state
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.contiguous())
    };
    for (name, p) in model.params_mut() {
        if let Some(t) = find(&name) {
            p.value = t;
        }
    }
    for (name, b) in model.buffers_mut() {
        if let Some(t) = find(&name) {
            *b = t;
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
