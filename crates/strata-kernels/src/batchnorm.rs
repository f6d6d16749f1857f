//! Batch normalisation over `[N, C, S]` blocks (`S = H·W` for convolutional
//! inputs, `S = 1` for fully connected ones): statistics per channel `c`,
//! over the `M = N·S` values of the minibatch.
//!
//! Section 12.4.4: `xⁿ = diag(s + ε)⁻¹ (x − m)`, `o = diag(γ) xⁿ + β`. Here
//! the divisor is `√(σ² + ε)` (ε inside the square root, as in Ioffe and
//! Szegedy and every framework), with `σ²` the biased minibatch variance.
//!
//! Backward through the batch statistics, with `x̂ = (x − μ)/√(σ² + ε)`:
//! `∂E/∂β = Σ g`, `∂E/∂γ = Σ g·x̂`,
//! `∂E/∂x = γ/√(σ² + ε) · (g − (Σ g)/M − x̂·(Σ g·x̂)/M)`.

use rayon::prelude::*;
use strata_tensor::Element;

fn check<T>(op: &str, x: &[T], n: usize, c: usize, s: usize) {
    assert_eq!(
        x.len(),
        n * c * s,
        "{op}: {} elements are not [{n}, {c}, {s}]",
        x.len()
    );
}

/// A ReLU fused after a batch norm, `max(0, γ·x̂ + β)`: the backward
/// recomputes where its output was positive from the input, `γ` and `β`
/// (the forward's own scale `γ·invstd` and shift `β − mean·γ·invstd`),
/// instead of reading the output.
#[derive(Clone, Copy, Debug)]
pub struct FusedRelu<'a, T> {
    /// The layer's scale `γ`.
    pub gamma: &'a [T],
    /// The layer's shift `β`.
    pub beta: &'a [T],
}

/// Per channel the scale `γ·invstd` and shift `β − mean·γ·invstd` that
/// normalise, the one definition the forward and a fused ReLU's backward
/// gate share (so they agree bit for bit on where the output is positive).
fn bn_affine<T: Element>(gamma: &[T], beta: &[T], mean: &[T], invstd: &[T]) -> (Vec<T>, Vec<T>) {
    let scale: Vec<T> = gamma
        .iter()
        .zip(invstd.iter())
        .map(|(&g, &k)| g * k)
        .collect();
    let shift: Vec<T> = (0..scale.len())
        .map(|i| beta[i] - mean[i] * scale[i])
        .collect();
    (scale, shift)
}

/// Per-channel `(Σ a, Σ a·(x − mean)·invstd)` over `[N, C, S]` (the second
/// only when `b = (x, mean, invstd)` is given), parallel over channels.
/// With `gate = (scale, shift)` (and `b`), `a` counts only where
/// `x·scale + shift > 0` ([`gate_slice`]).
fn channel_sums<T: Element>(
    a: &[T],
    b: Option<(&[T], &[T], &[T])>,
    gate: Option<(&[T], &[T])>,
    n: usize,
    c: usize,
    s: usize,
) -> (Vec<T>, Vec<T>) {
    let per_channel = |ch: usize| {
        let (mut sa, mut sab) = (T::zero(), T::zero());
        // A gated slice, in L1 between the gate and the two sums.
        let mut gated = vec![T::zero(); if gate.is_some() { s } else { 0 }];
        for i in 0..n {
            let off = (i * c + ch) * s;
            let seg = &a[off..off + s];
            match (b, gate) {
                (Some((x, mean, invstd)), gate) => {
                    let xs = &x[off..off + s];
                    let g = match gate {
                        Some((scale, shift)) => {
                            gate_slice(&mut gated, seg, xs, scale[ch], shift[ch]);
                            &gated[..]
                        }
                        None => seg,
                    };
                    sa = sa + crate::reduce::sum(g);
                    let dot = crate::reduce::dot_dev(g, xs, mean[ch]);
                    sab = sab + dot * invstd[ch];
                }
                (None, _) => sa = sa + crate::reduce::sum(seg),
            }
        }
        (sa, sab)
    };
    let sums: Vec<(T, T)> =
        crate::parallel::install(|| (0..c).into_par_iter().map(per_channel).collect());
    sums.into_iter().unzip()
}

/// `dst = g` where `x·a + b > 0`, else 0: where a fused ReLU's output
/// `max(0, x·a + b)` (the forward's scale and shift, evaluated the same
/// way) was positive, so the gate needs neither the output nor a gated copy
/// of the whole gradient. One slice at a time into L1, then the usual sums
/// ([`crate::reduce::sum`], [`crate::reduce::dot_dev`]), which so give what
/// gating the whole gradient first gives: a gate inside the eight-lane sums
/// compiled to masked scalar loads and ran at half their speed.
fn gate_slice<T: Element>(dst: &mut [T], g: &[T], x: &[T], a: T, b: T) {
    crate::isa::vectorised(
        #[inline(always)]
        || {
            for ((o, &gv), &xv) in dst.iter_mut().zip(g).zip(x) {
                *o = if xv * a + b > T::zero() {
                    gv
                } else {
                    T::zero()
                };
            }
        },
    )
}

/// `y[·, c, ·] = x·scale[c] + shift[c]`, parallel over samples.
pub fn channel_affine<T: Element>(
    x: &[T],
    n: usize,
    c: usize,
    s: usize,
    scale: &[T],
    shift: &[T],
    y: &mut [T],
) {
    channel_affine_act(x, n, c, s, scale, shift, false, y)
}

/// [`channel_affine`] followed, when `relu`, by `max(0, ·)` in the same pass
/// (batch norm + ReLU: one pass over the activations instead of two).
#[allow(clippy::too_many_arguments)]
pub fn channel_affine_act<T: Element>(
    x: &[T],
    n: usize,
    c: usize,
    s: usize,
    scale: &[T],
    shift: &[T],
    relu: bool,
    y: &mut [T],
) {
    check("channel_affine", x, n, c, s);
    assert_eq!(y.len(), x.len(), "channel_affine: output length");
    if s == 0 || c == 0 || n == 0 {
        return;
    }
    let sample = |(ys, xs): (&mut [T], &[T])| {
        for ((yc, xc), (&a, &b)) in ys
            .chunks_exact_mut(s)
            .zip(xs.chunks_exact(s))
            .zip(scale.iter().zip(shift))
        {
            if relu {
                for (o, &v) in yc.iter_mut().zip(xc) {
                    let z = v * a + b;
                    *o = if z > T::zero() { z } else { T::zero() };
                }
            } else {
                for (o, &v) in yc.iter_mut().zip(xc) {
                    *o = v * a + b;
                }
            }
        }
    };
    crate::parallel::install(|| {
        y.par_chunks_exact_mut(c * s)
            .zip(x.par_chunks_exact(c * s))
            .for_each(sample)
    });
}

/// Training-mode forward: normalises with the minibatch statistics. Writes
/// `y`, and per channel the batch `mean`, biased variance `var` and
/// `invstd = 1/√(var + ε)`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train<T: Element>(
    x: &[T],
    n: usize,
    c: usize,
    s: usize,
    gamma: &[T],
    beta: &[T],
    eps: T,
    y: &mut [T],
    mean: &mut [T],
    var: &mut [T],
    invstd: &mut [T],
) {
    batch_norm_train_act(x, n, c, s, gamma, beta, eps, false, y, mean, var, invstd)
}

/// [`batch_norm_train`] followed, when `relu`, by ReLU in the same pass.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_act<T: Element>(
    x: &[T],
    n: usize,
    c: usize,
    s: usize,
    gamma: &[T],
    beta: &[T],
    eps: T,
    relu: bool,
    y: &mut [T],
    mean: &mut [T],
    var: &mut [T],
    invstd: &mut [T],
) {
    train_act(
        x,
        (n, c, s),
        gamma,
        beta,
        eps,
        relu,
        None,
        y,
        (mean, var, invstd),
    );
}

/// [`batch_norm_train_act`] with the statistics from the per-slice terms of
/// `x` ([`slice_stats`], `slices[i·C + ch]`, e.g. from the convolution that
/// wrote `x`): the same result, bit for bit, one pass over `x` fewer.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_act_from_slices<T: Element>(
    x: &[T],
    n: usize,
    c: usize,
    s: usize,
    gamma: &[T],
    beta: &[T],
    eps: T,
    relu: bool,
    slices: &[(T, T)],
    y: &mut [T],
    mean: &mut [T],
    var: &mut [T],
    invstd: &mut [T],
) {
    let stats = (mean, var, invstd);
    train_act(x, (n, c, s), gamma, beta, eps, relu, Some(slices), y, stats);
}

/// The training forward: statistics from `x` itself or, given, from its
/// per-slice terms, stored with `invstd`; then the normalisation.
#[allow(clippy::too_many_arguments)]
fn train_act<T: Element>(
    x: &[T],
    (n, c, s): (usize, usize, usize),
    gamma: &[T],
    beta: &[T],
    eps: T,
    relu: bool,
    slices: Option<&[(T, T)]>,
    y: &mut [T],
    (mean, var, invstd): (&mut [T], &mut [T], &mut [T]),
) {
    check("batch_norm_train", x, n, c, s);
    assert!(
        gamma.len() == c && beta.len() == c,
        "batch_norm_train: γ, β length"
    );
    assert!(
        mean.len() == c && var.len() == c && invstd.len() == c,
        "batch_norm_train: stats"
    );
    let stats = match slices {
        Some(st) => channel_mean_var_from_slices(st, n, c, s),
        None => channel_mean_var(x, n, c, s),
    };
    for (ch, &(mu, v)) in stats.iter().enumerate() {
        mean[ch] = mu;
        var[ch] = v;
        invstd[ch] = T::one() / (v + eps).sqrt();
    }
    batch_norm_normalise_act(x, n, c, s, gamma, beta, mean, invstd, relu, y);
}

/// Per-channel `Σ x` over `[N, C, S]`, parallel over channels (the first
/// pass of the statistics, exposed so that processes sharing a minibatch can
/// add theirs before dividing).
pub fn channel_sum<T: Element>(x: &[T], n: usize, c: usize, s: usize) -> Vec<T> {
    check("channel_sum", x, n, c, s);
    channel_sums(x, None, None, n, c, s).0
}

/// Per-channel mean and biased variance over `[N, C, S]`, reading `x` from
/// memory once: each `S`-value slice of one image is summed and then, while
/// it is still in L1, its squared deviations about its own mean are; the
/// slices are combined as in Chan et al.'s parallel variance,
/// `M = Σᵢ Mᵢ + S·Σᵢ (μᵢ − μ)²` with `μ = Σᵢ μᵢ / N`. Deviations are taken
/// about means, so data far from zero do not cancel; a fixed order keeps
/// the result independent of the thread count.
pub fn channel_mean_var<T: Element>(x: &[T], n: usize, c: usize, s: usize) -> Vec<(T, T)> {
    check("channel_mean_var", x, n, c, s);
    if n == 0 || s == 0 {
        return vec![(T::zero(), T::zero()); c];
    }
    let per_channel = |ch: usize| {
        let slices = (0..n).map(|i| slice_stats(&x[(i * c + ch) * s..][..s]));
        combine_slices(slices, n, s)
    };
    crate::parallel::install(|| (0..c).into_par_iter().map(per_channel).collect())
}

/// One slice's terms of [`channel_mean_var`]: its mean `μᵢ` and the sum of
/// squared deviations about it, `Mᵢ = Σ (x − μᵢ)²`. A convolution can take
/// them while its output slice is in cache
/// ([`crate::conv::conv2d_forward_slice_stats`]), sparing batch norm a pass.
pub fn slice_stats<T: Element>(seg: &[T]) -> (T, T) {
    let mi = crate::reduce::sum(seg) / T::of(seg.len() as f64);
    (mi, crate::reduce::sum_sq_dev(seg, mi))
}

/// Mean and biased variance of one channel from its `n` slices' terms, in
/// image order (Chan et al.'s combination; see [`channel_mean_var`]).
fn combine_slices<T: Element>(slices: impl Iterator<Item = (T, T)>, n: usize, s: usize) -> (T, T) {
    let (nf, sf) = (T::of(n as f64), T::of(s as f64));
    let mut means = Vec::with_capacity(n);
    let mut within = T::zero();
    for (mi, m2) in slices {
        within = within + m2;
        means.push(mi);
    }
    let mean = crate::reduce::sum(&means) / nf;
    let between = crate::reduce::sum_sq_dev(&means, mean) * sf;
    (mean, (within + between) / (nf * sf))
}

/// [`channel_mean_var`] from the per-slice terms [`slice_stats`] of an
/// `[N, C, S]` tensor, `slices[i·C + ch]`: the same values, bit for bit,
/// without reading the tensor.
pub fn channel_mean_var_from_slices<T: Element>(
    slices: &[(T, T)],
    n: usize,
    c: usize,
    s: usize,
) -> Vec<(T, T)> {
    assert_eq!(slices.len(), n * c, "channel_mean_var_from_slices: length");
    if n == 0 || s == 0 {
        return vec![(T::zero(), T::zero()); c];
    }
    (0..c)
        .map(|ch| combine_slices((0..n).map(|i| slices[i * c + ch]), n, s))
        .collect()
}

/// Per-channel `Σ (x − mean)²` over `[N, C, S]` (the second pass).
pub fn channel_sq_dev<T: Element>(x: &[T], n: usize, c: usize, s: usize, mean: &[T]) -> Vec<T> {
    check("channel_sq_dev", x, n, c, s);
    assert_eq!(mean.len(), c, "channel_sq_dev: mean length");
    let sq = |ch: usize| {
        let mu = mean[ch];
        (0..n)
            .map(|i| {
                let off = (i * c + ch) * s;
                crate::reduce::sum_sq_dev(&x[off..off + s], mu)
            })
            .fold(T::zero(), |a, b| a + b)
    };
    crate::parallel::install(|| (0..c).into_par_iter().map(sq).collect())
}

/// `y = γ·(x − mean)·invstd + β` per channel (then ReLU when `relu`), with
/// statistics computed elsewhere.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_normalise_act<T: Element>(
    x: &[T],
    n: usize,
    c: usize,
    s: usize,
    gamma: &[T],
    beta: &[T],
    mean: &[T],
    invstd: &[T],
    relu: bool,
    y: &mut [T],
) {
    assert!(
        gamma.len() == c && beta.len() == c && mean.len() == c && invstd.len() == c,
        "batch_norm_normalise: per-channel lengths"
    );
    let (scale, shift) = bn_affine(gamma, beta, mean, invstd);
    channel_affine_act(x, n, c, s, &scale, &shift, relu, y);
}

/// Training-mode backward through the batch statistics (formula in the module
/// docs). Overwrites `dx`, `dgamma`, `dbeta`. With `relu` (a ReLU fused after
/// the normalisation, whose `γ` must be `gamma`), `dy` first passes the ReLU:
/// it counts only where the output is positive.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward<T: Element>(
    x: &[T],
    dy: &[T],
    relu: Option<FusedRelu<'_, T>>,
    n: usize,
    c: usize,
    s: usize,
    gamma: &[T],
    mean: &[T],
    invstd: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    check("batch_norm_train_backward", x, n, c, s);
    assert!(
        dy.len() == x.len() && dx.len() == x.len(),
        "batch_norm_train_backward: lengths"
    );
    let (sg, sgx) = batch_norm_grad_sums(x, dy, relu, n, c, s, mean, invstd);
    dbeta.copy_from_slice(&sg);
    dgamma.copy_from_slice(&sgx);
    let inv_m = T::one() / T::of((n * s).max(1) as f64);
    let mg: Vec<T> = sg.iter().map(|&v| v * inv_m).collect();
    let mgx: Vec<T> = sgx.iter().map(|&v| v * inv_m).collect();
    batch_norm_grad_apply(x, dy, relu, n, c, s, gamma, mean, invstd, &mg, &mgx, dx);
}

/// The first half of [`batch_norm_train_backward`]: per channel `(Σ g,
/// Σ g·x̂)`, which are `∂E/∂β` and `∂E/∂γ`. With `relu` (a fused ReLU) `g`
/// is `dy` gated where the ReLU's output was positive, recomputed from `x`
/// in the same pass, one slice at a time through an L1 buffer: two streams
/// read (`dy`, `x`), none written. (Gating the whole gradient into `dx`
/// first cost three more passes over the activations; gating by the stored
/// output, a third stream in both halves, measured slower.)
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_grad_sums<T: Element>(
    x: &[T],
    dy: &[T],
    relu: Option<FusedRelu<'_, T>>,
    n: usize,
    c: usize,
    s: usize,
    mean: &[T],
    invstd: &[T],
) -> (Vec<T>, Vec<T>) {
    check("batch_norm_grad_sums", x, n, c, s);
    assert_eq!(dy.len(), x.len(), "batch_norm_grad_sums: lengths");
    let affine = relu.map(|r| gate_affine(r, c, mean, invstd));
    let gate = affine.as_ref().map(|(a, b)| (&a[..], &b[..]));
    channel_sums(dy, Some((x, mean, invstd)), gate, n, c, s)
}

/// A fused ReLU's scale and shift ([`bn_affine`]), checked for length.
fn gate_affine<T: Element>(
    relu: FusedRelu<'_, T>,
    c: usize,
    mean: &[T],
    invstd: &[T],
) -> (Vec<T>, Vec<T>) {
    assert!(
        relu.gamma.len() == c && relu.beta.len() == c && mean.len() == c && invstd.len() == c,
        "batch norm backward: per-channel lengths"
    );
    bn_affine(relu.gamma, relu.beta, mean, invstd)
}

/// The second half of [`batch_norm_train_backward`]:
/// `∂E/∂x = γ·invstd·(g − mg − x̂·mgx)` per channel, with the means
/// `mg = (Σ g)/M`, `mgx = (Σ g·x̂)/M` given (over however many processes
/// share the minibatch). `g` is `dy`, gated as in [`batch_norm_grad_sums`]
/// when `relu` is given.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_grad_apply<T: Element>(
    x: &[T],
    dy: &[T],
    relu: Option<FusedRelu<'_, T>>,
    n: usize,
    c: usize,
    s: usize,
    gamma: &[T],
    mean: &[T],
    invstd: &[T],
    mg: &[T],
    mgx: &[T],
    dx: &mut [T],
) {
    check("batch_norm_grad_apply", x, n, c, s);
    assert!(
        dy.len() == x.len() && dx.len() == x.len(),
        "batch_norm_grad_apply: lengths"
    );
    assert!(
        gamma.len() == c && mean.len() == c && invstd.len() == c && mg.len() == c && mgx.len() == c,
        "batch_norm_grad_apply: per-channel lengths"
    );
    if s == 0 || c == 0 || n == 0 {
        return;
    }
    let affine = relu.map(|r| gate_affine(r, c, mean, invstd));
    // ∂E/∂x of one channel's slice of one image.
    let channel = |ch: usize, dc: &mut [T], gc: &[T], xc: &[T]| {
        let (mu, k) = (mean[ch], invstd[ch]);
        let a = gamma[ch] * k;
        let (mg, mgx) = (mg[ch], mgx[ch]);
        match &affine {
            Some((scale, shift)) => {
                let (ga, gb) = (scale[ch], shift[ch]);
                for ((o, &gv), &xv) in dc.iter_mut().zip(gc).zip(xc) {
                    let gv = if xv * ga + gb > T::zero() {
                        gv
                    } else {
                        T::zero()
                    };
                    *o = a * (gv - mg - (xv - mu) * k * mgx);
                }
            }
            None => {
                for ((o, &gv), &xv) in dc.iter_mut().zip(gc).zip(xc) {
                    *o = a * (gv - mg - (xv - mu) * k * mgx);
                }
            }
        }
    };
    crate::parallel::install(|| {
        dx.par_chunks_exact_mut(c * s)
            .zip(dy.par_chunks_exact(c * s))
            .zip(x.par_chunks_exact(c * s))
            .for_each(|((d, g), xs)| {
                // Compiled for the host's vectors (the gate a select).
                crate::isa::vectorised(
                    #[inline(always)]
                    || {
                        let slices = d
                            .chunks_exact_mut(s)
                            .zip(g.chunks_exact(s))
                            .zip(xs.chunks_exact(s));
                        for (ch, ((dc, gc), xc)) in slices.enumerate() {
                            channel(ch, dc, gc, xc);
                        }
                    },
                );
            })
    });
}

/// Evaluation-mode backward (statistics fixed, so the layer is a per-channel
/// affine map): `∂E/∂x = γ·invstd·g`, `∂E/∂γ = Σ g·x̂`, `∂E/∂β = Σ g`, with
/// `g` gated by a fused ReLU's output `relu_out` when given.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval_backward<T: Element>(
    x: &[T],
    dy: &[T],
    relu_out: Option<&[T]>,
    n: usize,
    c: usize,
    s: usize,
    gamma: &[T],
    mean: &[T],
    invstd: &[T],
    dx: Option<&mut [T]>,
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    check("batch_norm_eval_backward", x, n, c, s);
    let scale: Vec<T> = gamma.iter().zip(invstd).map(|(&g, &k)| g * k).collect();
    match (relu_out, dx) {
        (Some(y), Some(dx)) => {
            // Gate into dx, sum from it, then scale it in place.
            crate::elementwise::relu_backward(y, dy, dx);
            let (sg, sgx) = channel_sums(dx, Some((x, mean, invstd)), None, n, c, s);
            dbeta.copy_from_slice(&sg);
            dgamma.copy_from_slice(&sgx);
            let g = dx.to_vec();
            channel_affine(&g, n, c, s, &scale, &vec![T::zero(); c], dx);
        }
        (relu_out, dx) => {
            let mut gated = Vec::new();
            let g: &[T] = match relu_out {
                Some(y) => {
                    gated.resize(dy.len(), T::zero());
                    crate::elementwise::relu_backward(y, dy, &mut gated);
                    &gated
                }
                None => dy,
            };
            let (sg, sgx) = channel_sums(g, Some((x, mean, invstd)), None, n, c, s);
            dbeta.copy_from_slice(&sg);
            dgamma.copy_from_slice(&sgx);
            if let Some(dx) = dx {
                channel_affine(g, n, c, s, &scale, &vec![T::zero(); c], dx);
            }
        }
    }
}
