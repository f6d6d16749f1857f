//! Elementwise kernels over slices. Inner loops are written as zipped iterators
//! so the compiler drops bounds checks and vectorises them; large slices are
//! cut into fixed chunks run on the kernels' pool (each element is computed
//! the same way whatever the split, so results do not depend on the threads).

use rayon::prelude::*;
use strata_tensor::Element;

/// Below this many elements a pass runs on the calling thread: these loops
/// are memory-bound and a pool hand-off costs a few microseconds.
pub(crate) const PAR_MIN: usize = 1 << 16;

/// Elements per parallel task.
pub(crate) const CHUNK: usize = 1 << 14;

/// Runs `f(offset, out_chunk)` over `out`, in parallel when it is large.
/// Each call of `f` runs compiled for the host's vector ISA
/// ([`crate::isa::vectorised`]).
#[inline(always)]
fn par_out<T: Element>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    let f = |at: usize, c: &mut [T]| {
        crate::isa::vectorised(
            #[inline(always)]
            || f(at, c),
        )
    };
    if out.len() < PAR_MIN || crate::parallel::num_threads() == 1 {
        return f(0, out);
    }
    crate::parallel::install(|| {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, c)| f(i * CHUNK, c))
    });
}

/// Panics unless all lengths agree (a caller bug, not user input).
#[inline]
fn same_len(op: &str, a: usize, b: usize) {
    assert_eq!(a, b, "{op}: slice lengths differ ({a} vs {b})");
}

/// `out[i] = a[i] + b[i]`.
pub fn add<T: Element>(a: &[T], b: &[T], out: &mut [T]) {
    same_len("add", a.len(), b.len());
    same_len("add", a.len(), out.len());
    par_out(
        out,
        #[inline(always)]
        |at, out| {
            for ((o, &x), &y) in out.iter_mut().zip(&a[at..]).zip(&b[at..]) {
                *o = x + y;
            }
        },
    );
}

/// `out[i] = max(0, a[i] + b[i])`: a residual sum and its ReLU in one pass.
pub fn add_relu<T: Element>(a: &[T], b: &[T], out: &mut [T]) {
    same_len("add_relu", a.len(), b.len());
    same_len("add_relu", a.len(), out.len());
    let zero = T::zero();
    par_out(
        out,
        #[inline(always)]
        |at, out| {
            for ((o, &x), &y) in out.iter_mut().zip(&a[at..]).zip(&b[at..]) {
                let s = x + y;
                *o = if s > zero { s } else { zero };
            }
        },
    );
}

/// `acc[i] += x[i]`.
pub fn add_assign<T: Element>(acc: &mut [T], x: &[T]) {
    same_len("add_assign", acc.len(), x.len());
    par_out(
        acc,
        #[inline(always)]
        |at, acc| {
            for (a, &v) in acc.iter_mut().zip(&x[at..]) {
                *a = *a + v;
            }
        },
    );
}

/// `out[i] = a[i] · b[i]`.
pub fn mul<T: Element>(a: &[T], b: &[T], out: &mut [T]) {
    same_len("mul", a.len(), b.len());
    same_len("mul", a.len(), out.len());
    par_out(
        out,
        #[inline(always)]
        |at, out| {
            for ((o, &x), &y) in out.iter_mut().zip(&a[at..]).zip(&b[at..]) {
                *o = x * y;
            }
        },
    );
}

/// `y[i] ← α·x[i] + y[i]` (BLAS axpy).
pub fn axpy<T: Element>(alpha: T, x: &[T], y: &mut [T]) {
    same_len("axpy", x.len(), y.len());
    par_out(
        y,
        #[inline(always)]
        |at, y| {
            for (yi, &xi) in y.iter_mut().zip(&x[at..]) {
                *yi = alpha * xi + *yi;
            }
        },
    );
}

/// `out[i] = α·x[i]`.
pub fn scale_into<T: Element>(alpha: T, x: &[T], out: &mut [T]) {
    same_len("scale_into", x.len(), out.len());
    par_out(
        out,
        #[inline(always)]
        |at, out| {
            for (o, &v) in out.iter_mut().zip(&x[at..]) {
                *o = alpha * v;
            }
        },
    );
}

/// `x[i] ← α·x[i]`.
pub fn scale<T: Element>(alpha: T, x: &mut [T]) {
    par_out(
        x,
        #[inline(always)]
        |_, x| x.iter_mut().for_each(|v| *v = alpha * *v),
    );
}

/// ReLU, `F(u) = max(0, u)`: `out[i] = max(0, x[i])`.
pub fn relu<T: Element>(x: &[T], out: &mut [T]) {
    same_len("relu", x.len(), out.len());
    let zero = T::zero();
    par_out(
        out,
        #[inline(always)]
        |at, out| {
            for (o, &v) in out.iter_mut().zip(&x[at..]) {
                *o = if v > zero { v } else { zero };
            }
        },
    );
}

/// ReLU in place.
pub fn relu_inplace<T: Element>(x: &mut [T]) {
    let zero = T::zero();
    par_out(
        x,
        #[inline(always)]
        |_, x| {
            for v in x.iter_mut() {
                *v = if *v > zero { *v } else { zero };
            }
        },
    );
}

/// ReLU in place on a short run (a row of a convolution's output), inlined
/// into the caller's vectorised loop: [`relu_inplace`] would dispatch, and
/// consider threads, once per row.
#[inline(always)]
pub(crate) fn relu_row<T: Element>(x: &mut [T]) {
    let zero = T::zero();
    x.iter_mut()
        .for_each(|v| *v = if *v > zero { *v } else { zero });
}

/// `x[i] += y[i]` on a short run, inlined like [`relu_row`].
#[inline(always)]
pub(crate) fn add_row<T: Element>(x: &mut [T], y: &[T]) {
    x.iter_mut().zip(y).for_each(|(a, &b)| *a = *a + b);
}

/// A convolution's epilogue on a run of one output slice, in one pass:
/// `x ← F((x + b) + r)`, each part only if given (`F` = ReLU when `relu`),
/// the same additions in the same order as the separate passes, so the
/// result is identical. One loop per combination, each vectorised: three
/// passes over short rows cost 10–20 % of a thin layer's forward.
#[inline(always)]
pub(crate) fn finish_row<T: Element>(x: &mut [T], bias: Option<T>, res: Option<&[T]>, relu: bool) {
    #[inline(always)]
    fn run<T: Element, const B: bool, const A: bool>(x: &mut [T], b: T, res: Option<&[T]>) {
        let zero = T::zero();
        // (v + b) + r, then the activation.
        let f = |v: T, r: Option<T>| {
            let v = if B { v + b } else { v };
            let v = r.map_or(v, |r| v + r);
            if A {
                if v > zero {
                    v
                } else {
                    zero
                }
            } else {
                v
            }
        };
        match res {
            Some(r) => x.iter_mut().zip(r).for_each(|(v, &r)| *v = f(*v, Some(r))),
            None => x.iter_mut().for_each(|v| *v = f(*v, None)),
        }
    }
    let b = bias.unwrap_or(T::zero());
    match (bias.is_some(), relu) {
        (true, true) => run::<T, true, true>(x, b, res),
        (true, false) => run::<T, true, false>(x, b, res),
        (false, true) => run::<T, false, true>(x, b, res),
        (false, false) => run::<T, false, false>(x, b, res),
    }
}

/// ReLU backward: `dx[i] = dy[i]·𝕀[y[i] > 0]`, with `y` the forward output (or input:
/// the mask is the same).
pub fn relu_backward<T: Element>(y: &[T], dy: &[T], dx: &mut [T]) {
    same_len("relu_backward", y.len(), dy.len());
    same_len("relu_backward", y.len(), dx.len());
    let zero = T::zero();
    par_out(
        dx,
        #[inline(always)]
        |at, dx| {
            for ((d, &g), &v) in dx.iter_mut().zip(&dy[at..]).zip(&y[at..]) {
                *d = if v > zero { g } else { zero };
            }
        },
    );
}

/// Adds `bias` (length `cols`) to every row of the row-major `rows × cols` matrix `x`.
pub fn add_row_bias<T: Element>(x: &mut [T], bias: &[T]) {
    let cols = bias.len();
    if cols == 0 {
        return;
    }
    same_len("add_row_bias", x.len() % cols, 0);
    for row in x.chunks_exact_mut(cols) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = *v + b;
        }
    }
}

/// Inverted-dropout mask from random bits: `mask[i] = 0` when
/// `bits[i] < threshold` (threshold `p·2³²` drops with probability `p`),
/// else `keep` (`1/(1−p)`).
pub fn dropout_mask<T: Element>(bits: &[u32], threshold: u64, keep: T, mask: &mut [T]) {
    same_len("dropout_mask", bits.len(), mask.len());
    for (m, &b) in mask.iter_mut().zip(bits) {
        *m = if u64::from(b) < threshold {
            T::zero()
        } else {
            keep
        };
    }
}

/// Adds `bias[c]` to every element of channel `c` of an `[N, C, inner]` block
/// (`inner = H·W` for images, 1 for a linear layer's `[N, C]` output).
pub fn add_channel_bias<T: Element>(x: &mut [T], bias: &[T], inner: usize) {
    if inner == 1 {
        return add_row_bias(x, bias);
    }
    if bias.is_empty() || inner == 0 {
        return;
    }
    for (i, plane) in x.chunks_exact_mut(inner).enumerate() {
        let b = bias[i % bias.len()];
        plane.iter_mut().for_each(|v| *v = *v + b);
    }
}

/// Multiplies by a dropout mask: `out[i] = x[i]·mask[i]`, where `mask` already holds
/// `0` or `1/(1−p)` (inverted dropout).
pub fn apply_mask<T: Element>(x: &[T], mask: &[T], out: &mut [T]) {
    mul(x, mask, out)
}

/// `Σ x[i]²`, accumulated in eight independent lanes so it vectorises.
pub fn sum_squares<T: Element>(x: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = *l + v * v;
        }
    }
    let tail: T = chunks.remainder().iter().map(|&v| v * v).sum();
    lanes.iter().copied().sum::<T>() + tail
}

/// Whether every element is finite (no NaN or ±∞).
pub fn all_finite<T: Element>(x: &[T]) -> bool {
    x.iter().all(|v| v.is_finite())
}
