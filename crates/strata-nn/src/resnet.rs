//! CIFAR-style residual networks (He et al.): depth `6n + 2` with basic blocks
//! (ResNet-20/32/56/110) or `9n + 2` with bottleneck blocks (the 1001-layer
//! pre-activation network has n = 111), in both residual variants.
//!
//! Layout: a 3×3 convolution to 16 slices; three stages of `n` blocks at
//! widths `w, 2w, 4w` (bottleneck outputs 4× that), the first block of stages
//! 2 and 3 with stride 2 and a 1×1 projection shortcut; global average
//! pooling; a linear layer to the classes. The original variant puts BN + ReLU
//! after the first convolution; the pre-activation one puts BN + ReLU before
//! the pooling instead. Convolutions have no bias (batch norm's β plays it).

use crate::batchnorm::BatchNorm;
use crate::conv::{Conv2dConfig, Padding};
use crate::error::{NnError, Result};
use crate::layers::{Linear, Relu};
use crate::pool::GlobalAvgPool;
use crate::residual::{Residual, ResidualKind};
use crate::sequential::Sequential;
use rand::Rng;
use strata_autograd::Real;

/// Configuration of a CIFAR-style ResNet (data; [`ResNetConfig::build`] makes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Number of weighted layers: `6n + 2` (basic) or `9n + 2` (bottleneck).
    pub depth: usize,
    /// Original or pre-activation residual layers.
    pub kind: ResidualKind,
    /// Bottleneck (1×1, 3×3, 1×1) instead of basic (3×3, 3×3) blocks.
    pub bottleneck: bool,
    /// Slices of the input image (3 for colour).
    pub in_channels: usize,
    /// Number of classes.
    pub classes: usize,
    /// Width of the first stage (16 in the paper).
    pub width: usize,
}

impl ResNetConfig {
    /// He et al.'s CIFAR-10 network of `depth` with basic blocks.
    pub fn cifar(depth: usize, kind: ResidualKind) -> Self {
        Self {
            depth,
            kind,
            bottleneck: false,
            in_channels: 3,
            classes: 10,
            width: 16,
        }
    }

    /// ResNet-20 (original variant): the `resnet20` reference workload.
    pub fn resnet20() -> Self {
        Self::cifar(20, ResidualKind::Original)
    }

    /// With bottleneck blocks (depth `9n + 2`).
    pub fn bottleneck(mut self) -> Self {
        self.bottleneck = true;
        self
    }

    /// Blocks per stage `n`, or an error if the depth is not `6n + 2` (`9n + 2`).
    pub fn blocks_per_stage(&self) -> Result<usize> {
        let per = if self.bottleneck { 9 } else { 6 };
        let n = self.depth.saturating_sub(2) / per;
        if n == 0 || n * per + 2 != self.depth {
            return Err(NnError::Config(format!(
                "a CIFAR ResNet with {} blocks has depth {per}n + 2; {} is not of that form",
                if self.bottleneck {
                    "bottleneck"
                } else {
                    "basic"
                },
                self.depth
            )));
        }
        Ok(n)
    }

    /// Builds the network.
    pub fn build<T: Real>(&self, rng: &mut impl Rng) -> Result<Sequential<T>> {
        let n = self.blocks_per_stage()?;
        if self.in_channels == 0 || self.classes == 0 || self.width == 0 {
            return Err(NnError::Config(format!(
                "impossible ResNet configuration {self:?}"
            )));
        }
        let original = self.kind == ResidualKind::Original;
        let mut net = Sequential::new();
        net.push(
            Conv2dConfig::new(self.in_channels, self.width, 3)
                .padding(Padding::Same)
                .bias(false)
                .build::<T>(rng)?,
        );
        if original {
            net.push(BatchNorm::new(self.width)?);
            net.push(Relu);
        }
        let expansion = if self.bottleneck { 4 } else { 1 };
        let mut channels = self.width;
        for stage in 0..3 {
            let mid = self.width << stage;
            let out = mid * expansion;
            for b in 0..n {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let block = if self.bottleneck {
                    Residual::bottleneck(self.kind, channels, mid, out, stride, true, rng)?
                } else {
                    Residual::basic(self.kind, channels, out, stride, true, rng)?
                };
                net.push(block);
                channels = out;
            }
        }
        if !original {
            net.push(BatchNorm::new(channels)?);
            net.push(Relu);
        }
        net.push(GlobalAvgPool);
        net.push(Linear::new(channels, self.classes, rng)?);
        Ok(net)
    }
}
