//! GELU (Hendrycks and Gimpel, 2016) in its tanh form, the one PyTorch calls
//! `approximate = "tanh"`:
//!
//! `F(x) = ½x(1 + tanh u)`, `u = c(x + a x³)`, `c = √(2/π)`, `a = 0.044715`,
//!
//! `F'(x) = ½(1 + tanh u) + ½x(1 − tanh² u)·c(1 + 3a x²)`.
//!
//! The f32 loops evaluate `tanh` through a polynomial `2^f` (no libm call), so
//! they vectorise; f64 uses the standard library's `tanh` (the gradient checks
//! run in f64). Both are exact derivatives of what the forward computes, up to
//! rounding.

use crate::elementwise::{CHUNK, PAR_MIN};
use crate::isa::{as_f32, as_f32_mut, isa_loop};
use rayon::prelude::*;
use strata_tensor::Element;

const C: f64 = 0.797_884_560_802_865_4; // √(2/π)
const A: f64 = 0.044_715;

/// `tanh(u)` in f32 from `e^{2u}` by range reduction `2^k·2^f`, `|f| ≤ ½`,
/// and a degree-7 Taylor polynomial of `2^f` (relative error below 2e-7);
/// branch-free so the loops around it vectorise.
#[inline(always)]
fn tanh_f32(u: f32) -> f32 {
    // Past |u| = 9, tanh is ±1 in f32.
    let u = u.clamp(-9.0, 9.0);
    let y = 2.0 * u * std::f32::consts::LOG2_E;
    // Round to nearest by adding and taking away 1.5·2²³ (|y| < 26): unlike
    // `f32::round`, a libm call on baseline x86-64, this vectorises.
    const SHIFT: f32 = 12_582_912.0;
    let r = y + SHIFT;
    let k = r - SHIFT;
    let f = y - k;
    let p = 1.0
        + f * (std::f32::consts::LN_2
            + f * (0.240_226_5
                + f * (0.055_504_11
                    + f * (0.009_618_129
                        + f * (0.001_333_356 + f * (0.000_154_035_3 + f * 0.000_015_252_73))))));
    // 2^k by building the exponent bits (k lies in [−26, 26]). k is read
    // off the low bits of r = 1.5·2²³ + k, not by `k as i32`: that
    // saturating conversion stays scalar, one lane at a time, in the loops.
    let ki = r.to_bits().wrapping_sub(SHIFT.to_bits());
    let e = p * f32::from_bits(ki.wrapping_add(127) << 23);
    (e - 1.0) / (e + 1.0)
}

#[inline(always)]
fn forward_f32(x: f32) -> f32 {
    let u = C as f32 * (x + A as f32 * x * x * x);
    0.5 * x * (1.0 + tanh_f32(u))
}

#[inline(always)]
fn backward_f32(x: f32, dy: f32) -> f32 {
    let u = C as f32 * (x + A as f32 * x * x * x);
    let t = tanh_f32(u);
    dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C as f32 * (1.0 + 3.0 * A as f32 * x * x))
}

fn forward_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + (C * (x + A * x * x * x)).tanh())
}

fn backward_f64(x: f64, dy: f64) -> f64 {
    let t = (C * (x + A * x * x * x)).tanh();
    dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * A * x * x))
}

/// The f32 loops, compiled once per ISA ([`isa_loop`]): inlined into a
/// `target_feature` wrapper, the branch-free `tanh_f32` runs 16 lanes wide
/// with AVX-512 instead of baseline x86-64's 4. Every lane does the same
/// IEEE operations in the same order (no contraction into FMAs), so the
/// results are the same bits on every ISA.
#[inline(always)]
fn forward_loop(x: &[f32], out: &mut [f32]) {
    out.iter_mut()
        .zip(x)
        .for_each(|(o, &v)| *o = forward_f32(v))
}

#[inline(always)]
fn backward_loop(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.iter_mut()
        .zip(x)
        .zip(dy)
        .for_each(|((d, &v), &g)| *d = backward_f32(v, g))
}

isa_loop!(forward_isa, forward_loop, (x: &[f32], out: &mut [f32]));
isa_loop!(backward_isa, backward_loop, (x: &[f32], dy: &[f32], dx: &mut [f32]));

/// Runs `f(offset, chunk)` over `out`, in parallel when it is large.
fn par<U: Send>(out: &mut [U], f: impl Fn(usize, &mut [U]) + Sync) {
    if out.len() < PAR_MIN || crate::parallel::num_threads() == 1 {
        return f(0, out);
    }
    crate::parallel::install(|| {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, c)| f(i * CHUNK, c))
    });
}

/// `out[i] = F(x[i])`.
pub fn gelu<T: Element>(x: &[T], out: &mut [T]) {
    assert_eq!(x.len(), out.len(), "gelu: slice lengths differ");
    if let (Some(x), Some(out)) = (as_f32(x), as_f32_mut(out)) {
        return par(out, |at, o| forward_isa(&x[at..][..o.len()], o));
    }
    par(out, |at, o| {
        o.iter_mut()
            .zip(&x[at..])
            .for_each(|(o, &v)| *o = T::of(forward_f64(v.as_f64())))
    });
}

/// `dx[i] = dy[i]·F'(x[i])`, with `x` the forward input.
pub fn gelu_backward<T: Element>(x: &[T], dy: &[T], dx: &mut [T]) {
    assert_eq!(x.len(), dy.len(), "gelu_backward: slice lengths differ");
    assert_eq!(x.len(), dx.len(), "gelu_backward: slice lengths differ");
    if let (Some(x), Some(dy), Some(dx)) = (as_f32(x), as_f32(dy), as_f32_mut(dx)) {
        return par(dx, |at, d| {
            let n = d.len();
            backward_isa(&x[at..][..n], &dy[at..][..n], d)
        });
    }
    par(dx, |at, d| {
        d.iter_mut()
            .zip(&x[at..])
            .zip(&dy[at..])
            .for_each(|((d, &v), &g)| *d = T::of(backward_f64(v.as_f64(), g.as_f64())))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_agrees_with_f64_everywhere() {
        let xs: Vec<f32> = (-4000..=4000)
            .map(|i| i as f32 * 0.005)
            .chain([-50.0, 50.0, 0.0])
            .collect();
        let mut y = vec![0.0f32; xs.len()];
        gelu(&xs, &mut y);
        let dy = vec![1.0f32; xs.len()];
        let mut dx = vec![0.0f32; xs.len()];
        gelu_backward(&xs, &dy, &mut dx);
        for ((&x, &v), &d) in xs.iter().zip(&y).zip(&dx) {
            let (e, de) = (forward_f64(x as f64), backward_f64(x as f64, 1.0));
            assert!(
                (v as f64 - e).abs() <= 1e-6 * (1.0 + e.abs()),
                "F({x}) = {v}, want {e}"
            );
            assert!(
                (d as f64 - de).abs() <= 2e-6 * (1.0 + de.abs()),
                "F'({x}) = {d}, want {de}"
            );
        }
    }

    /// The loops compiled for this CPU's widest ISA give the baseline
    /// build's bits, forward and backward (no contraction, same order).
    #[test]
    fn every_isa_gives_the_same_bits() {
        let xs: Vec<f32> = (0..10_007)
            .map(|i| (i as f32 * 0.618_034).sin() * 12.0)
            .chain([f32::NAN, f32::INFINITY, -f32::INFINITY, 0.0, -0.0, 1e-30])
            .collect();
        let dy: Vec<f32> = xs.iter().map(|&x| (x * 0.37).cos()).collect();
        let (mut a, mut b) = (vec![0.0f32; xs.len()], vec![0.0f32; xs.len()]);
        forward_isa(&xs, &mut a);
        forward_loop(&xs, &mut b);
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
        backward_isa(&xs, &dy, &mut a);
        backward_loop(&xs, &dy, &mut b);
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
    }

    #[test]
    fn known_values() {
        // PyTorch: gelu(1.0, approximate="tanh") = 0.8411920, gelu(-1.0) = -0.1588080.
        let mut y = [0.0f64; 3];
        gelu(&[1.0f64, -1.0, 0.0], &mut y);
        assert!((y[0] - 0.841_192_0).abs() < 1e-6 && (y[1] + 0.158_808_0).abs() < 1e-6);
        assert_eq!(y[2], 0.0);
    }

    #[test]
    fn backward_matches_central_differences_in_f64() {
        for i in -60..=60 {
            let x = i as f64 * 0.1 + 0.013;
            let h = 1e-6;
            let fd = (forward_f64(x + h) - forward_f64(x - h)) / (2.0 * h);
            assert!((backward_f64(x, 1.0) - fd).abs() < 1e-8, "x = {x}");
        }
    }
}
