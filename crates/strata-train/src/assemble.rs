//! Assembling a network from a spec, checking every shape before training.

use crate::spec::{LayerSpec, Spec, SpecError};
use crate::spec::{PadSpec, ResidualSpec};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::Real;
use strata_data::Dataset;
use strata_nn::{
    BatchNorm, Conv2d, Conv2dConfig, Dropout, Flatten, Gelu, GlobalAvgPool, Init, Linear,
    MaxPool2d, Module, OddPolicy, Padding, Relu, ResNetConfig, Residual, Scale, Sequential,
};
use strata_tensor::Tensor;

/// One row of the layer table `strata inspect` prints.
#[derive(Clone, Debug)]
pub struct LayerRow {
    /// Parameter-name prefix, e.g. `layers.3`.
    pub path: String,
    /// Description, e.g. `linear 784→1024`.
    pub kind: String,
    /// Per-sample output shape.
    pub output: Vec<usize>,
    /// Trainable scalars.
    pub parameters: usize,
    /// Multiply-accumulates per sample.
    pub flops: u64,
}

/// Builds the spec's network for per-sample input shape `input` (e.g.
/// `[1, 28, 28]`) and `classes` outputs, initialised from `seed`. Every layer's
/// shape is checked first; an error names the layer's index, line and shapes.
pub fn build_model<T: Real>(
    spec: &Spec,
    input: &[usize],
    classes: usize,
) -> Result<Sequential<T>, SpecError> {
    build_model_fitted(spec, input, classes, None)
}

/// As [`build_model`], fitting the layers that are fitted on data (the
/// patch-whitening layer) on `train`, the preprocessed training images;
/// without data their weights are zeros, to be loaded from a saved model.
pub fn build_model_fitted<T: Real>(
    spec: &Spec,
    input: &[usize],
    classes: usize,
    train: Option<&Dataset>,
) -> Result<Sequential<T>, SpecError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.train.seed);
    let init = Init {
        epsilon: spec.init_epsilon.unwrap_or(Init::default().epsilon),
        ..Init::default()
    };
    let mut net = Sequential::new();
    let mut shape = input.to_vec();
    for (i, (layer, &line)) in spec.layers.iter().zip(&spec.layer_lines).enumerate() {
        let err = |message: String| SpecError {
            file: spec.file.clone(),
            line: Some(line),
            field: format!("model.layers[{i}] ({})", layer.kind()),
            message,
        };
        let module: Box<dyn Module<T>> = match layer {
            LayerSpec::Linear { out, bias } => {
                if shape.len() != 1 {
                    return Err(err(format!(
                        "a linear layer takes a vector per sample, but the previous layer gives shape {shape:?}; add \"flatten\" before it"
                    )));
                }
                let mut l = Linear::with_init(shape[0], *out, init, &mut rng)
                    .map_err(|e| err(e.to_string()))?;
                // No bias: held at 0.
                l.bias.frozen = !*bias;
                Box::new(l)
            }
            LayerSpec::Relu => Box::new(Relu),
            LayerSpec::Gelu => Box::new(Gelu),
            LayerSpec::Scale { factor } => Box::new(Scale { factor: *factor }),
            LayerSpec::Whiten {
                kernel,
                eps,
                images,
                ..
            } => {
                if i != 0 {
                    return Err(err("the whitening layer is fitted on the training images, so it must be the first layer".into()));
                }
                let c = block_channels(&shape).map_err(&err)?;
                let d = c * kernel * kernel;
                let cfg = Conv2dConfig::new(c, 2 * d, *kernel).padding(Padding::Valid);
                let mut conv: Conv2d<T> = cfg.build(&mut rng).map_err(|e| err(e.to_string()))?;
                conv.weight.frozen = true;
                conv.weight.value = Tensor::zeros(conv.weight.value.shape());
                if let Some(train) = train {
                    let (w, b) = fit_whitening(train, *kernel, *eps, *images).map_err(&err)?;
                    conv.weight.value = cast(&w);
                    if let Some(bias) = &mut conv.bias {
                        bias.value = cast(&b);
                    }
                }
                Box::new(conv)
            }
            LayerSpec::Dropout { p } => Box::new(Dropout::new(*p).map_err(|e| err(e.to_string()))?),
            LayerSpec::Flatten => Box::new(Flatten),
            LayerSpec::Conv {
                out,
                kernel,
                stride,
                pad,
                border,
                bias,
                dirac,
            } => {
                let c = block_channels(&shape).map_err(&err)?;
                let padding = match pad {
                    PadSpec::Same => Padding::Same,
                    PadSpec::Valid => Padding::Valid,
                    PadSpec::Uniform(p) => Padding::Uniform(*p),
                };
                let cfg = Conv2dConfig::new(c, *out, *kernel)
                    .stride(*stride)
                    .padding(padding)
                    .border(*border)
                    .bias(*bias);
                let cfg = Conv2dConfig { init, ..cfg };
                let mut conv: Conv2d<T> = cfg.build(&mut rng).map_err(|e| err(e.to_string()))?;
                if *dirac {
                    conv.dirac();
                }
                Box::new(conv)
            }
            LayerSpec::MaxPool { size, stride, ceil } => {
                let policy = if *ceil {
                    OddPolicy::Ceil
                } else {
                    OddPolicy::Floor
                };
                Box::new(MaxPool2d::with_stride(*size, *stride).policy(policy))
            }
            LayerSpec::GlobalAvgPool => Box::new(GlobalAvgPool),
            LayerSpec::BatchNorm {
                scale,
                momentum,
                eps,
            } => {
                let c = *shape
                    .first()
                    .ok_or_else(|| err("batch norm needs an input".into()))?;
                let mut bn = BatchNorm::new(c).map_err(|e| err(e.to_string()))?;
                bn.gamma.frozen = !*scale;
                bn.momentum = *momentum;
                bn.eps = *eps;
                Box::new(bn)
            }
            LayerSpec::Residual(r) => residual(&shape, r, r.stride, &mut rng).map_err(&err)?,
            LayerSpec::Stage { blocks, block } => {
                let mut stage = Sequential::new();
                let mut s = shape.clone();
                for b in 0..*blocks {
                    let stride = if b == 0 { block.stride } else { 1 };
                    let m = residual(&s, block, stride, &mut rng).map_err(&err)?;
                    s = m.output_shape(&s).map_err(|e| err(e.to_string()))?;
                    stage.push_boxed(m);
                }
                Box::new(stage)
            }
            LayerSpec::ResNet {
                depth,
                kind,
                width,
                bottleneck,
            } => {
                let c = block_channels(&shape).map_err(&err)?;
                let cfg = ResNetConfig {
                    depth: *depth,
                    kind: *kind,
                    bottleneck: *bottleneck,
                    in_channels: c,
                    classes,
                    width: *width,
                };
                Box::new(cfg.build(&mut rng).map_err(|e| err(e.to_string()))?)
            }
        };
        shape = module
            .output_shape(&shape)
            .map_err(|e| err(format!("input shape {shape:?} does not fit: {e}")))?;
        // Outputs of a whole minibatch must fit too (a huge padding or unit
        // count is an error here, not an aborted allocation mid-training).
        let batch_shape: Vec<usize> = std::iter::once(spec.train.batch.max(1))
            .chain(shape.iter().copied())
            .collect();
        strata_nn::check_allocatable::<T>("the minibatch's outputs", &batch_shape)
            .map_err(|e| err(e.to_string()))?;
        net.push_boxed(module);
    }
    if shape != [classes] {
        return Err(SpecError {
            file: spec.file.clone(),
            line: spec.layer_lines.last().copied(),
            field: format!("model.layers[{}]", spec.layers.len() - 1),
            message: format!("the network must end with one output per class ({classes}), but it gives shape {shape:?}"),
        });
    }
    Ok(net)
}

/// The patch-whitening filters and biases ([`strata_data::PatchZca::signed_filters`],
/// PCA form) fitted on `images` items of `train` spread evenly over it (data
/// sets stored class by class would give one class from a prefix).
fn fit_whitening(
    train: &Dataset,
    kernel: usize,
    eps: f64,
    images: usize,
) -> Result<(Tensor<f32>, Tensor<f32>), String> {
    let [_, c, h, w] = train.shape();
    let n = images.min(train.len());
    let mut x = vec![0.0f32; n * c * h * w];
    for (i, chunk) in x.chunks_exact_mut((c * h * w).max(1)).enumerate() {
        train.write_image(i * train.len() / n, chunk);
    }
    let z = strata_data::PatchZca::fit_kind(
        strata_data::WhiteningKind::Pca,
        &x,
        n,
        [c, h, w],
        kernel,
        eps as f32,
    )
    .map_err(|e| format!("fitting the whitening layer: {e}"))?;
    z.signed_filters()
        .map_err(|e| format!("fitting the whitening layer: {e}"))
}

/// An f32 tensor in the network's element type.
fn cast<T: Real>(t: &Tensor<f32>) -> Tensor<T> {
    let v: Vec<T> = t
        .to_contiguous_slice()
        .iter()
        .map(|&x| T::of(x as f64))
        .collect();
    Tensor::from_vec(v, t.shape()).expect("same shape")
}

/// The layer table of a built network.
pub fn layer_table<T: Real>(net: &Sequential<T>, input: &[usize]) -> Vec<LayerRow> {
    let mut rows = Vec::new();
    let mut shape = input.to_vec();
    for (i, l) in net.layers().iter().enumerate() {
        let flops = l.flops(&shape);
        shape = l.output_shape(&shape).unwrap_or_default();
        rows.push(LayerRow {
            path: format!("layers.{i}"),
            kind: l.describe(),
            output: shape.clone(),
            parameters: l.params().iter().map(|(_, p)| p.value.numel()).sum(),
            flops,
        });
    }
    rows
}

/// Slices of a `[C, H, W]` block, or an error for other shapes.
fn block_channels(shape: &[usize]) -> Result<usize, String> {
    match shape {
        [c, _, _] => Ok(*c),
        _ => Err(format!("this layer works on [channels, height, width] blocks, but its input has shape {shape:?}")),
    }
}

/// A residual layer for this input: convolutional on blocks, fully connected on vectors.
fn residual<T: Real>(
    shape: &[usize],
    r: &ResidualSpec,
    stride: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Box<dyn Module<T>>, String> {
    let m = match shape {
        [c, _, _] => Residual::basic(r.kind, *c, r.out, stride, r.batchnorm, rng),
        [f] if stride == 1 => Residual::dense(r.kind, *f, r.out, r.batchnorm, rng),
        [_] => return Err("a fully connected residual layer has no stride".into()),
        _ => {
            return Err(format!(
                "a residual layer needs a vector or a block, got shape {shape:?}"
            ))
        }
    };
    Ok(Box::new(m.map_err(|e| e.to_string())?))
}
