//! A layer's evaluation-mode function as plain data ([`Module::lower`]), for
//! exporters such as strata-train's ONNX writer: what each layer computes,
//! with its weights, and nothing of how strata runs it (no fusion, no
//! packed weights, no folded batch norm).
//!
//! [`Module::lower`]: crate::Module::lower

use strata_autograd::kernels::pad::{Border, Pad2d};
use strata_autograd::Real;
use strata_tensor::Tensor;

/// One layer in evaluation mode.
#[derive(Clone, Debug)]
pub enum Lowered<T: Real> {
    /// `y = x·Wᵀ + b` (then ReLU when `relu`), `W` of shape `[out, in]`.
    Linear {
        /// `[out, in]`.
        weight: Tensor<T>,
        /// `[out]`.
        bias: Tensor<T>,
        /// A ReLU fused after the layer.
        relu: bool,
    },
    /// A 2-D convolution of `[C, H, W]` images: the input padded by `pad`
    /// with `border`, then correlated with `weight` at `stride`.
    Conv {
        /// `[out, in, kh, kw]`.
        weight: Tensor<T>,
        /// `[out]`, if the layer has biases.
        bias: Option<Tensor<T>>,
        /// `[vertical, horizontal]` stride.
        stride: [usize; 2],
        /// The padding for this layer's input size.
        pad: Pad2d,
        /// What the padding holds.
        border: Border,
    },
    /// `γ·(x − m)/√(v + ε) + β` per channel with the running estimates.
    BatchNorm {
        /// `γ`.
        gamma: Tensor<T>,
        /// `β`.
        beta: Tensor<T>,
        /// Running mean `m`.
        mean: Tensor<T>,
        /// Running variance `v`.
        var: Tensor<T>,
        /// `ε`.
        eps: f64,
    },
    /// `max(0, x)`.
    Relu,
    /// GELU in its tanh form, `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    Gelu,
    /// `factor·x`.
    Scale(f64),
    /// The identity (dropout in evaluation).
    Identity,
    /// `[C, H, W]` to `[C·H·W]` per sample.
    Flatten,
    /// Max pooling; `ceil` keeps partial windows at the far edges.
    MaxPool {
        /// `[height, width]`.
        window: [usize; 2],
        /// `[vertical, horizontal]`.
        stride: [usize; 2],
        /// Partial windows kept (the chapter's "impute") or dropped.
        ceil: bool,
    },
    /// The mean of each channel, `[C, H, W]` to `[C]`.
    GlobalAvgPool,
    /// The layers in order.
    Sequence(Vec<Lowered<T>>),
    /// `out = body(h) + skip` with `h = pre(x)` and `skip` the shortcut
    /// applied to `h`, or `x` itself without one; then ReLU when `relu`
    /// (the original layer; the pre-activation one ends on the sum).
    Residual {
        /// Applied to the input first (`[BN,] ReLU` in pre-activation layers).
        pre: Box<Lowered<T>>,
        /// The residual branch.
        body: Box<Lowered<T>>,
        /// The projection, when the shape changes.
        shortcut: Option<Box<Lowered<T>>>,
        /// ReLU after the sum.
        relu: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dropout, Module, Residual, ResidualKind, Sequential};
    use rand::SeedableRng;

    #[test]
    fn a_residual_layer_lowers_to_its_branches_with_the_weights() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        let mut net = Sequential::<f32>::new();
        net.push(Residual::basic(ResidualKind::Original, 4, 8, 2, true, &mut rng).unwrap());
        net.push(Dropout::new(0.5).unwrap());
        let Some(Lowered::Sequence(layers)) = net.lower(&[4, 9, 9]) else {
            panic!("a sequence");
        };
        assert!(matches!(layers[1], Lowered::Identity));
        let Lowered::Residual {
            body,
            shortcut,
            relu,
            ..
        } = &layers[0]
        else {
            panic!("a residual layer");
        };
        assert!(*relu, "the original layer ends on a ReLU");
        assert!(
            shortcut.is_some(),
            "4 → 8 slices at stride 2 need a projection"
        );
        let Lowered::Sequence(body) = &**body else {
            panic!("the body is a sequence");
        };
        // The first 3×3 convolution: stride 2, "same" padding of a 9×9 input.
        let Lowered::Conv {
            weight,
            stride,
            pad,
            ..
        } = &body[0]
        else {
            panic!("the body starts with a convolution");
        };
        assert_eq!(weight.shape(), [8, 4, 3, 3]);
        assert_eq!(*stride, [2, 2]);
        assert_eq!((pad.top + pad.bottom, pad.left + pad.right), (2, 2));
        // The weights are the layer's own.
        let named = net.params();
        let w = named
            .iter()
            .find(|(n, _)| n == "layers.0.body.layers.0.weight")
            .map(|(_, p)| p.value.to_vec());
        assert_eq!(w, Some(weight.to_vec()));
    }
}
