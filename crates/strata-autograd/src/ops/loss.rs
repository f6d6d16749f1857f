//! Softmax and the fused softmax cross-entropy loss of section 12.1.
//!
//! The loss of a minibatch of M rows of logits `o_i` with labels `y_i` is
//! `(1/M) Σ_i −log s_{y_i}(o_i)`. Its gradient with respect to the logits is
//! `(s(o_i) − onehot(y_i))/M` — the chapter's `∂ log s_u/∂o_v = 𝕀[u=v] − s_v`
//! with the one-hot "switches" reduced to one index per row — computed in the
//! same pass as the loss, after shifting each row by its maximum for stability.

use crate::error::{shape_err, AutogradError, Result};
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::softmax;
use strata_tensor::Tensor;

struct CrossEntropyBackward<T> {
    /// `(s − y)/M`, saved from the forward pass.
    dlogits: Vec<T>,
}

impl<T: Real> Backward<T> for CrossEntropyBackward<T> {
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        grad: &Tensor<T>,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let g = grad.item()?;
        let d: Vec<T> = self.dlogits.iter().map(|&v| v * g).collect();
        Ok(vec![Some(tensor(d, inputs[0].shape()))])
    }
}

struct SoftmaxBackward;

impl<T: Real> Backward<T> for SoftmaxBackward {
    /// `∂E/∂u_i = s_i (g_i − Σ_j g_j s_j)` per row.
    fn backward(
        &self,
        _inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        grad: &Tensor<T>,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let cols = output.shape()[1];
        let (s, g) = (output.to_contiguous_slice(), grad.to_contiguous_slice());
        let mut dx = vec![T::zero(); s.len()];
        for ((d, sr), gr) in dx
            .chunks_exact_mut(cols)
            .zip(s.chunks_exact(cols))
            .zip(g.chunks_exact(cols))
        {
            let dot: T = sr.iter().zip(gr).map(|(&a, &b)| a * b).sum();
            for ((di, &si), &gi) in d.iter_mut().zip(sr).zip(gr) {
                *di = si * (gi - dot);
            }
        }
        Ok(vec![Some(tensor(dx, output.shape()))])
    }
}

fn check_logits(op: &'static str, shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() != 2 || shape[1] == 0 {
        return Err(shape_err(
            op,
            "logits must be a [minibatch, classes] matrix with at least one class",
            &[shape],
        ));
    }
    Ok((shape[0], shape[1]))
}

impl<T: Real> Tape<T> {
    /// Mean softmax cross-entropy of `logits` (`[M, C]`) against integer `labels`
    /// (`M` of them, each `< C`): a scalar.
    pub fn softmax_cross_entropy(&mut self, logits: Var, labels: &[usize]) -> Result<Var> {
        self.softmax_cross_entropy_smoothed(logits, labels, 0.0)
    }

    /// [`Tape::softmax_cross_entropy`] against label-smoothed targets
    /// `(1 − ε)·onehot(y) + ε/C` (`smoothing` is `ε`, in `[0, 1)`); `ε = 0`
    /// is the plain loss.
    pub fn softmax_cross_entropy_smoothed(
        &mut self,
        logits: Var,
        labels: &[usize],
        smoothing: f64,
    ) -> Result<Var> {
        const OP: &str = "softmax_cross_entropy";
        let lv = self.value(logits)?;
        let (rows, cols) = check_logits(OP, lv.shape())?;
        if labels.len() != rows {
            return Err(shape_err(
                OP,
                format!("{} labels for {rows} rows of logits", labels.len()),
                &[lv.shape()],
            ));
        }
        if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= cols) {
            return Err(AutogradError::LabelOutOfRange {
                op: OP,
                label,
                row,
                classes: cols,
            });
        }
        if !(0.0..1.0).contains(&smoothing) {
            return Err(AutogradError::BadSmoothing { smoothing });
        }
        let mut dlogits = vec![T::zero(); lv.numel()];
        let loss = softmax::softmax_cross_entropy_smoothed(
            &lv.to_contiguous_slice(),
            labels,
            cols,
            T::of(smoothing),
            &mut dlogits,
        );
        self.push_op(&[logits], tensor(vec![loss], &[]), || {
            Box::new(CrossEntropyBackward { dlogits })
        })
    }

    /// Row-wise softmax of `[M, C]` logits: the class probabilities `s(o)`.
    pub fn softmax(&mut self, logits: Var) -> Result<Var> {
        let lv = self.value(logits)?;
        let (_, cols) = check_logits("softmax", lv.shape())?;
        let mut s = vec![T::zero(); lv.numel()];
        softmax::softmax_rows(&lv.to_contiguous_slice(), cols, &mut s);
        let out = tensor(s, lv.shape());
        self.push_op(&[logits], out, || Box::new(SoftmaxBackward))
    }
}
