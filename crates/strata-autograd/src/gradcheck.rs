//! Numerical gradient checking — "one learns to check gradients" (12.1.3).
//!
//! Backprop's gradient is compared with central differences
//! `(f(θ + h e_i) − f(θ − h e_i)) / 2h` in f64, entry by entry (or on a
//! seeded random sample of entries for large tensors).

use crate::error::{AutogradError, Result};
use crate::{Tape, Var};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_tensor::Tensor;

/// Settings of a gradient check.
#[derive(Clone, Debug)]
pub struct GradCheckOptions {
    /// Finite-difference step `h`.
    pub step: f64,
    /// Check at most this many entries per tensor (a seeded random sample).
    pub max_entries: usize,
    /// Seed of that sample.
    pub seed: u64,
    /// Relative errors are `|a − n| / max(|a|, |n|, floor)`: the floor keeps
    /// entries whose true gradient is ~0 from dominating. Central differences
    /// carry a rounding error of about `ε·|f| / h` (~1e-11·|f| at `h = 1e-5`
    /// in f64), so entries far below the floor are judged on absolute error
    /// against it rather than on a relative error that would measure rounding.
    pub floor: f64,
}

impl Default for GradCheckOptions {
    fn default() -> Self {
        Self {
            step: 1e-5,
            max_entries: 200,
            seed: 0,
            floor: 1e-3,
        }
    }
}

/// The outcome of checking one tensor's gradient.
#[derive(Clone, Debug)]
pub struct GradCheckReport {
    /// Name the caller gave the tensor.
    pub name: String,
    /// Largest relative error over the checked entries.
    pub max_rel_error: f64,
    /// Largest absolute error over the checked entries.
    pub max_abs_error: f64,
    /// How many entries were checked.
    pub checked: usize,
}

/// Relative error as [`GradCheckOptions::floor`] defines it.
pub fn relative_error(analytic: f64, numeric: f64, floor: f64) -> f64 {
    (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(floor)
}

/// Checks the gradient of the scalar `f(tape, vars)` with respect to each named
/// input tensor. `f` must be deterministic (seed any randomness inside it).
pub fn check_gradients<F>(
    inputs: &[(&str, Tensor<f64>)],
    f: F,
    opts: &GradCheckOptions,
) -> Result<Vec<GradCheckReport>>
where
    F: Fn(&mut Tape<f64>, &[Var]) -> Result<Var>,
{
    let eval = |values: &[Tensor<f64>]| -> Result<f64> {
        let mut tape = Tape::inference();
        let vars: Vec<Var> = values.iter().map(|v| tape.input(v.clone())).collect();
        let y = f(&mut tape, &vars)?;
        Ok(tape.value(y)?.item()?)
    };
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs
        .iter()
        .map(|(_, t)| tape.leaf(t.contiguous()))
        .collect();
    let y = f(&mut tape, &vars)?;
    let grads = tape.backward(y)?;
    let mut values: Vec<Tensor<f64>> = inputs.iter().map(|(_, t)| t.contiguous()).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(opts.seed);
    let mut reports = Vec::with_capacity(inputs.len());
    for (i, (name, t)) in inputs.iter().enumerate() {
        let n = t.numel();
        let analytic = match grads.get(vars[i]) {
            Some(g) => g.to_vec(),
            None => vec![0.0; n],
        };
        let entries: Vec<usize> = if n <= opts.max_entries {
            (0..n).collect()
        } else {
            let mut e = sample(&mut rng, n, opts.max_entries).into_vec();
            e.sort_unstable();
            e
        };
        let (mut max_rel, mut max_abs) = (0.0f64, 0.0f64);
        for &e in &entries {
            let orig = values[i].to_vec()[e];
            let mut nudge = |delta: f64| -> Result<f64> {
                values[i].data_mut()[e] = orig + delta;
                eval(&values)
            };
            let (up, down) = (nudge(opts.step)?, nudge(-opts.step)?);
            values[i].data_mut()[e] = orig;
            let numeric = (up - down) / (2.0 * opts.step);
            if !numeric.is_finite() {
                return Err(AutogradError::Backward(format!(
                    "gradcheck: the loss is not finite near entry {e} of {name}"
                )));
            }
            max_abs = max_abs.max((analytic[e] - numeric).abs());
            max_rel = max_rel.max(relative_error(analytic[e], numeric, opts.floor));
        }
        reports.push(GradCheckReport {
            name: name.to_string(),
            max_rel_error: max_rel,
            max_abs_error: max_abs,
            checked: entries.len(),
        });
    }
    Ok(reports)
}
