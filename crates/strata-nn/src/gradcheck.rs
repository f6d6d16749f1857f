//! Gradient checking of a whole network: backprop against central differences
//! for every parameter (12.1.3, "one learns to check gradients").

use crate::error::Result;
use crate::module::{Ctx, Mode, Module};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::gradcheck::{relative_error, GradCheckOptions, GradCheckReport};
use strata_autograd::{Tape, Var};
use strata_tensor::Tensor;

/// The loss the check differentiates: mean softmax cross-entropy of the
/// network's outputs, plus `(λ/2) Σ wᵀw` over decayed parameters.
fn loss(
    model: &mut dyn Module<f64>,
    tape: &mut Tape<f64>,
    x: &Tensor<f64>,
    labels: &[usize],
    lambda: f64,
    mode: Mode,
    seed: u64,
) -> Result<Var> {
    // Same seed every evaluation: dropout masks are identical across nudges.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let xi = tape.input(x.clone());
    let mut ctx = Ctx::new(mode, &mut rng);
    let out = model.forward(tape, xi, &mut ctx)?;
    let e = tape.softmax_cross_entropy(out, labels)?;
    if lambda == 0.0 {
        return Ok(e);
    }
    let decayed: Vec<_> = model
        .params()
        .into_iter()
        .filter(|(_, p)| p.decay)
        .map(|(_, p)| p.clone())
        .collect();
    let vars: Vec<Var> = decayed.iter().map(|p| tape.param(p)).collect();
    let r = tape.l2_penalty(&vars, lambda)?;
    Ok(tape.add(e, r)?)
}

/// Checks every parameter of `model` (f64) on the minibatch `x`, `labels`
/// ([`strata_autograd::Param::frozen`] ones are constants and skipped).
/// Returns the worst relative error per parameter tensor, by name.
pub fn check_module_gradients(
    model: &mut dyn Module<f64>,
    x: &Tensor<f64>,
    labels: &[usize],
    lambda: f64,
    mode: Mode,
    opts: &GradCheckOptions,
) -> Result<Vec<GradCheckReport>> {
    let mut tape = Tape::new();
    let l = loss(model, &mut tape, x, labels, lambda, mode, opts.seed)?;
    let grads = tape.backward(l)?;
    let analytic: Vec<(String, Vec<f64>)> = model
        .params()
        .into_iter()
        .map(|(n, p)| {
            let g = grads
                .param(p.id())
                .map_or_else(|| vec![0.0; p.value.numel()], |g| g.to_vec());
            (n, g)
        })
        .collect();
    drop(tape);
    let eval = |model: &mut dyn Module<f64>| -> Result<f64> {
        let mut t = Tape::inference();
        let l = loss(model, &mut t, x, labels, lambda, mode, opts.seed)?;
        Ok(t.value(l)?
            .item()
            .map_err(strata_autograd::AutogradError::from)?)
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(opts.seed ^ 0x9e37_79b9);
    let mut reports = Vec::new();
    for (pi, (name, g)) in analytic.iter().enumerate() {
        // A frozen parameter is a constant of the network: nothing to check.
        if model.params()[pi].1.frozen {
            continue;
        }
        let n = g.len();
        let entries: Vec<usize> = if n <= opts.max_entries {
            (0..n).collect()
        } else {
            sample(&mut rng, n, opts.max_entries).into_vec()
        };
        let (mut max_rel, mut max_abs) = (0.0f64, 0.0f64);
        for &e in &entries {
            let orig = model.params()[pi].1.value.to_vec()[e];
            let at = |model: &mut dyn Module<f64>, v: f64| -> Result<f64> {
                model.params_mut()[pi].1.value.data_mut()[e] = v;
                eval(model)
            };
            let up = at(model, orig + opts.step)?;
            let down = at(model, orig - opts.step)?;
            model.params_mut()[pi].1.value.data_mut()[e] = orig;
            let numeric = (up - down) / (2.0 * opts.step);
            max_abs = max_abs.max((g[e] - numeric).abs());
            max_rel = max_rel.max(relative_error(g[e], numeric, opts.floor));
        }
        reports.push(GradCheckReport {
            name: name.clone(),
            max_rel_error: max_rel,
            max_abs_error: max_abs,
            checked: entries.len(),
        });
    }
    Ok(reports)
}
