//! Numerically stable row-wise softmax, log-softmax and the fused softmax
//! cross-entropy loss of section 12.1.
//!
//! Subtracting the row maximum before exponentiating leaves
//! `s(u)_i = e^{u_i} / Σ_k e^{u_k}` unchanged and keeps every exponent ≤ 0.

use strata_tensor::Element;

fn rows_check(op: &str, len: usize, cols: usize) -> usize {
    assert!(cols > 0, "{op}: zero columns");
    assert_eq!(len % cols, 0, "{op}: {len} elements are not rows of {cols}");
    len / cols
}

fn row_max<T: Element>(row: &[T]) -> T {
    row.iter().copied().fold(T::neg_infinity(), T::max)
}

/// Softmax of each row of a row-major `rows × cols` matrix.
pub fn softmax_rows<T: Element>(x: &[T], cols: usize, out: &mut [T]) {
    rows_check("softmax_rows", x.len(), cols);
    assert_eq!(x.len(), out.len(), "softmax_rows: output length");
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let m = row_max(xr);
        let mut total = T::zero();
        for (o, &v) in or.iter_mut().zip(xr) {
            *o = (v - m).exp();
            total = total + *o;
        }
        let inv = T::one() / total;
        or.iter_mut().for_each(|o| *o = *o * inv);
    }
}

/// Log-softmax of each row: `u_i − m − log Σ_k e^{u_k − m}`, `m` the row maximum.
pub fn log_softmax_rows<T: Element>(x: &[T], cols: usize, out: &mut [T]) {
    rows_check("log_softmax_rows", x.len(), cols);
    assert_eq!(x.len(), out.len(), "log_softmax_rows: output length");
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let m = row_max(xr);
        let lse = xr.iter().map(|&v| (v - m).exp()).sum::<T>().ln() + m;
        for (o, &v) in or.iter_mut().zip(xr) {
            *o = v - lse;
        }
    }
}

/// Fused softmax cross-entropy over a minibatch of `rows` logit rows.
///
/// Returns the mean loss `(1/M) Σ_i −log s_{y_i}(o_i)` and writes into `grad`
/// its gradient with respect to the logits, `(s(o_i) − y_i)/M`, where `y_i` is
/// the one-hot label: the chapter's `∂ log s_u/∂o_v = 𝕀[u=v] − s_v`, with the
/// one-hot "switches" reduced to a single index per row.
///
/// # Panics
/// If a label is not smaller than `cols` (callers validate labels first).
pub fn softmax_cross_entropy<T: Element>(
    logits: &[T],
    labels: &[usize],
    cols: usize,
    grad: &mut [T],
) -> T {
    softmax_cross_entropy_smoothed(logits, labels, cols, T::zero(), grad)
}

/// [`softmax_cross_entropy`] against label-smoothed targets (Szegedy et al.,
/// 2016): row `i`'s target is `q = (1 − ε)·onehot(y_i) + ε/C` instead of the
/// one-hot vector, so the loss is `(1/M) Σ_i −Σ_k q_k log s_k(o_i)` and its
/// gradient `(s(o_i) − q)/M`. The targets never reach 0 or 1, so the logits
/// are not pushed to grow without bound. `ε = 0` is the plain loss.
///
/// # Panics
/// If a label is not smaller than `cols` (callers validate labels first).
pub fn softmax_cross_entropy_smoothed<T: Element>(
    logits: &[T],
    labels: &[usize],
    cols: usize,
    smoothing: T,
    grad: &mut [T],
) -> T {
    let rows = rows_check("softmax_cross_entropy", logits.len(), cols);
    assert_eq!(
        labels.len(),
        rows,
        "softmax_cross_entropy: one label per row"
    );
    assert_eq!(
        grad.len(),
        logits.len(),
        "softmax_cross_entropy: gradient length"
    );
    if rows == 0 {
        return T::zero();
    }
    let inv_m = T::one() / T::of(rows as f64);
    // Target weights: `hit` on the label, `spread` on every class (label included).
    let spread = smoothing / T::of(cols as f64);
    let hit = T::one() - smoothing;
    let mut loss = T::zero();
    for ((xr, gr), &y) in logits
        .chunks_exact(cols)
        .zip(grad.chunks_exact_mut(cols))
        .zip(labels)
    {
        assert!(
            y < cols,
            "softmax_cross_entropy: label {y} ≥ {cols} classes"
        );
        let m = row_max(xr);
        let mut total = T::zero();
        for (g, &v) in gr.iter_mut().zip(xr) {
            *g = (v - m).exp();
            total = total + *g;
        }
        // −Σ q_k log s_k = log Σ e^{u_k − m} − Σ q_k (u_k − m), as Σ q_k = 1.
        loss = loss + total.ln() - hit * (xr[y] - m);
        let scale = inv_m / total;
        gr.iter_mut().for_each(|g| *g = *g * scale);
        gr[y] = gr[y] - hit * inv_m;
        if smoothing != T::zero() {
            let sum_shifted = xr.iter().map(|&v| v - m).sum::<T>();
            loss = loss - spread * sum_shifted;
            let d = spread * inv_m;
            gr.iter_mut().for_each(|g| *g = *g - d);
        }
    }
    loss * inv_m
}
