//! Reductions. Axis reductions see a tensor as `[outer, len, inner]` (row-major),
//! reducing the middle axis; that covers "along any axis" of a contiguous tensor.

use strata_tensor::Element;

/// `Σ x[i]`, in eight independent lanes (vectorised, and a fixed summation
/// order so results are deterministic).
pub fn sum<T: Element>(x: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = *l + v;
        }
    }
    let tail: T = chunks.remainder().iter().copied().sum();
    lanes.iter().copied().sum::<T>() + tail
}

/// `Σ (x[i] − m)²`, in eight lanes like [`sum`] (a plain iterator sum is one
/// serial chain of dependent adds, four times slower).
pub fn sum_sq_dev<T: Element>(x: &[T], m: T) -> T {
    let mut lanes = [T::zero(); 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = *l + (v - m) * (v - m);
        }
    }
    let tail: T = chunks.remainder().iter().map(|&v| (v - m) * (v - m)).sum();
    lanes.iter().copied().sum::<T>() + tail
}

/// `Σ a[i]·(x[i] − m)` over the common length, in eight lanes.
pub fn dot_dev<T: Element>(a: &[T], x: &[T], m: T) -> T {
    let mut lanes = [T::zero(); 8];
    let n = a.len().min(x.len());
    let (a, x) = (&a[..n], &x[..n]);
    let mut ac = a.chunks_exact(8);
    let mut xc = x.chunks_exact(8);
    for (ca, cx) in (&mut ac).zip(&mut xc) {
        for ((l, &g), &v) in lanes.iter_mut().zip(ca).zip(cx) {
            *l = *l + g * (v - m);
        }
    }
    let tail: T = ac
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(&g, &v)| g * (v - m))
        .sum();
    lanes.iter().copied().sum::<T>() + tail
}

/// Mean of `x` (0 for an empty slice).
pub fn mean<T: Element>(x: &[T]) -> T {
    if x.is_empty() {
        T::zero()
    } else {
        sum(x) / T::of(x.len() as f64)
    }
}

fn check_axis(op: &str, len_x: usize, outer: usize, len: usize, inner: usize) {
    assert_eq!(
        len_x,
        outer * len * inner,
        "{op}: {len_x} elements do not form [{outer}, {len}, {inner}]"
    );
}

/// Sums the middle axis of `x` seen as `[outer, len, inner]` into `out` (`[outer, inner]`).
pub fn sum_axis<T: Element>(x: &[T], outer: usize, len: usize, inner: usize, out: &mut [T]) {
    check_axis("sum_axis", x.len(), outer, len, inner);
    assert_eq!(out.len(), outer * inner, "sum_axis: output length");
    out.iter_mut().for_each(|v| *v = T::zero());
    if inner == 0 || len == 0 {
        return;
    }
    for (o, block) in out.chunks_exact_mut(inner).zip(x.chunks_exact(len * inner)) {
        for row in block.chunks_exact(inner) {
            for (a, &v) in o.iter_mut().zip(row) {
                *a = *a + v;
            }
        }
    }
}

/// Sums the rows of a row-major `rows × cols` matrix: `out[j] = Σ_i x[i, j]`
/// (the bias gradient of a linear layer).
pub fn sum_rows<T: Element>(x: &[T], rows: usize, cols: usize, out: &mut [T]) {
    sum_axis(x, 1, rows, cols, out)
}

/// Mean over the middle axis of `[outer, len, inner]`.
pub fn mean_axis<T: Element>(x: &[T], outer: usize, len: usize, inner: usize, out: &mut [T]) {
    sum_axis(x, outer, len, inner, out);
    if len > 0 {
        let s = T::one() / T::of(len as f64);
        out.iter_mut().for_each(|v| *v = *v * s);
    }
}

/// Maximum and its index (first occurrence) over the middle axis of
/// `[outer, len, inner]`; `len` must be positive. NaN compares as smaller than
/// everything, so it is only chosen if every value is NaN.
pub fn max_axis<T: Element>(
    x: &[T],
    outer: usize,
    len: usize,
    inner: usize,
    max: &mut [T],
    argmax: &mut [usize],
) {
    check_axis("max_axis", x.len(), outer, len, inner);
    assert!(len > 0, "max_axis: empty axis");
    assert_eq!(max.len(), outer * inner, "max_axis: output length");
    assert_eq!(argmax.len(), outer * inner, "max_axis: argmax length");
    for (o, block) in x.chunks_exact(len * inner).enumerate() {
        let (m, am) = (
            &mut max[o * inner..(o + 1) * inner],
            &mut argmax[o * inner..(o + 1) * inner],
        );
        m.copy_from_slice(&block[..inner]);
        am.iter_mut().for_each(|a| *a = 0);
        for (l, row) in block.chunks_exact(inner).enumerate().skip(1) {
            for ((mv, av), &v) in m.iter_mut().zip(am.iter_mut()).zip(row) {
                if v > *mv || (mv.is_nan() && !v.is_nan()) {
                    *mv = v;
                    *av = l;
                }
            }
        }
    }
}

/// Index of the largest entry of each row of a `rows × cols` matrix (predicted class).
pub fn argmax_rows<T: Element>(x: &[T], rows: usize, cols: usize) -> Vec<usize> {
    let mut m = vec![T::zero(); rows];
    let mut a = vec![0; rows];
    if rows > 0 {
        // A row-wise argmax is the middle-axis reduction of [rows, cols, 1].
        max_axis(x, rows, cols, 1, &mut m, &mut a);
    }
    a
}

/// Per-channel sums of an `[outer, channels, inner]` block: `out[c] = Σ_{n,i} x[n, c, i]`
/// (the bias gradient of a linear or convolutional layer).
pub fn sum_channels<T: Element>(
    x: &[T],
    outer: usize,
    channels: usize,
    inner: usize,
    out: &mut [T],
) {
    if inner == 1 {
        return sum_rows(x, outer, channels, out);
    }
    check_axis("sum_channels", x.len(), outer, channels, inner);
    // Sum each (n, c) plane, then over n.
    let per: Vec<T> = x.chunks_exact(inner.max(1)).map(sum).collect();
    sum_rows(&per, outer, channels, out)
}
