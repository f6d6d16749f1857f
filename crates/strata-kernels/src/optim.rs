//! Parameter-update kernels for the optimisers of section 12.2.4, one fused pass
//! over each parameter tensor. `g` is the gradient already including any L2
//! penalty term.

use crate::elementwise::{CHUNK, PAR_MIN};
use rayon::prelude::*;
use strata_tensor::Element;

fn lens(op: &str, a: usize, b: usize) {
    assert_eq!(
        a, b,
        "{op}: parameter and gradient lengths differ ({a} vs {b})"
    );
}

/// Plain SGD: `θ ← θ − η g`.
pub fn sgd<T: Element>(theta: &mut [T], g: &[T], lr: T) {
    lens("sgd", theta.len(), g.len());
    for (t, &gi) in theta.iter_mut().zip(g) {
        *t = *t - lr * gi;
    }
}

/// Momentum as the chapter writes it: `v ← μ v + η g; θ ← θ − v`.
pub fn sgd_momentum<T: Element>(theta: &mut [T], g: &[T], v: &mut [T], lr: T, mu: T) {
    lens("sgd_momentum", theta.len(), g.len());
    lens("sgd_momentum", theta.len(), v.len());
    for ((t, &gi), vi) in theta.iter_mut().zip(g).zip(v.iter_mut()) {
        *vi = mu * *vi + lr * gi;
        *t = *t - *vi;
    }
}

/// Momentum with the L2 penalty folded in, one pass and no copy of the
/// gradient: `g' = λθ + g; v ← μ v + η g'; θ ← θ − v`, element by element in
/// the same order as [`crate::elementwise::axpy`] then [`sgd_momentum`], so
/// the result is bit-identical to those two calls. Parallel for large tensors.
pub fn sgd_momentum_l2<T: Element>(theta: &mut [T], g: &[T], v: &mut [T], lr: T, mu: T, wd: T) {
    lens("sgd_momentum_l2", theta.len(), g.len());
    lens("sgd_momentum_l2", theta.len(), v.len());
    let step = |(theta, v, g): (&mut [T], &mut [T], &[T])| {
        for ((t, &gi), vi) in theta.iter_mut().zip(g).zip(v.iter_mut()) {
            let gi = wd * *t + gi;
            *vi = mu * *vi + lr * gi;
            *t = *t - *vi;
        }
    };
    if theta.len() < PAR_MIN || crate::parallel::num_threads() == 1 {
        return step((theta, v, g));
    }
    crate::parallel::install(|| {
        theta
            .par_chunks_mut(CHUNK)
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|((t, v), g)| step((t, v, g)))
    });
}

/// Momentum in PyTorch's convention, with the L2 penalty folded in:
/// `g' = g + λθ; b ← μ b + g'`, then `θ ← θ − η b`, or with Nesterov's
/// look-ahead `θ ← θ − η (g' + μ b)`. Unlike the chapter's `v ← μv + ηg`
/// the buffer holds gradients, not steps, so a change of `η` takes effect at
/// once. `wd = 0` is no penalty. Parallel for large tensors.
#[allow(clippy::too_many_arguments)]
pub fn sgd_momentum_torch<T: Element>(
    theta: &mut [T],
    g: &[T],
    b: &mut [T],
    lr: T,
    mu: T,
    wd: T,
    nesterov: bool,
) {
    lens("sgd_momentum_torch", theta.len(), g.len());
    lens("sgd_momentum_torch", theta.len(), b.len());
    let step = |(theta, b, g): (&mut [T], &mut [T], &[T])| {
        for ((t, &gi), bi) in theta.iter_mut().zip(g).zip(b.iter_mut()) {
            let gi = gi + wd * *t;
            *bi = mu * *bi + gi;
            let d = if nesterov { gi + mu * *bi } else { *bi };
            *t = *t - lr * d;
        }
    };
    if theta.len() < PAR_MIN || crate::parallel::num_threads() == 1 {
        return step((theta, b, g));
    }
    crate::parallel::install(|| {
        theta
            .par_chunks_mut(CHUNK)
            .zip(b.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|((t, b), g)| step((t, b, g)))
    });
}

/// One look-ahead synchronisation (Zhang et al., 2019): the slow copy moves
/// toward the fast weights, `e ← e + w·(θ − e)`, and the fast weights restart
/// from it, `θ ← e`.
pub fn lookahead_sync<T: Element>(slow: &mut [T], theta: &mut [T], w: T) {
    lens("lookahead_sync", theta.len(), slow.len());
    for (e, t) in slow.iter_mut().zip(theta.iter_mut()) {
        *e = *e + w * (*t - *e);
        *t = *e;
    }
}

/// Adagrad: `c ← c + g²; θ ← θ − η g/(√c + α)`.
pub fn adagrad<T: Element>(theta: &mut [T], g: &[T], c: &mut [T], lr: T, alpha: T) {
    lens("adagrad", theta.len(), g.len());
    lens("adagrad", theta.len(), c.len());
    for ((t, &gi), ci) in theta.iter_mut().zip(g).zip(c.iter_mut()) {
        *ci = *ci + gi * gi;
        *t = *t - lr * gi / (ci.sqrt() + alpha);
    }
}

/// RMSprop: `c ← Δ c + (1 − Δ) g²; θ ← θ − η g/(√c + α)`.
pub fn rmsprop<T: Element>(theta: &mut [T], g: &[T], c: &mut [T], lr: T, decay: T, alpha: T) {
    lens("rmsprop", theta.len(), g.len());
    lens("rmsprop", theta.len(), c.len());
    let one_minus = T::one() - decay;
    for ((t, &gi), ci) in theta.iter_mut().zip(g).zip(c.iter_mut()) {
        *ci = decay * *ci + one_minus * gi * gi;
        *t = *t - lr * gi / (ci.sqrt() + alpha);
    }
}

/// Adam (Kingma & Ba) with bias correction for step `t ≥ 1`:
/// `m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// θ ← θ − η (m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)`.
/// With `decoupled_wd > 0` this is AdamW: `θ ← θ − η·wd·θ` is applied first.
#[allow(clippy::too_many_arguments)]
pub fn adam<T: Element>(
    theta: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    lr: T,
    beta1: T,
    beta2: T,
    eps: T,
    step: u64,
    decoupled_wd: T,
) {
    lens("adam", theta.len(), g.len());
    lens("adam", theta.len(), m.len());
    lens("adam", theta.len(), v.len());
    let step = step.max(1) as i32;
    let bc1 = T::one() - beta1.powi(step);
    let bc2 = T::one() - beta2.powi(step);
    let shrink = T::one() - lr * decoupled_wd;
    for (((t, &gi), mi), vi) in theta.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *mi = beta1 * *mi + (T::one() - beta1) * gi;
        *vi = beta2 * *vi + (T::one() - beta2) * gi * gi;
        *t = *t * shrink - lr * (*mi / bc1) / ((*vi / bc2).sqrt() + eps);
    }
}
