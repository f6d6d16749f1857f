//! `[model]`: the layers of `model.layers` ([`LayerSpec`]) and their parser.

/// One layer of `model.layers`.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerSpec {
    /// `{ linear = 256 }` or `{ linear = { out = 256, bias = false } }`.
    Linear {
        /// Units.
        out: usize,
        /// Whether the layer has biases (without, they are held at 0).
        bias: bool,
    },
    /// `"relu"`.
    Relu,
    /// `"gelu"`: GELU in its tanh form.
    Gelu,
    /// `{ scale = 0.111 }`: multiplies by a fixed factor (e.g. on the logits).
    Scale {
        /// The factor.
        factor: f64,
    },
    /// `{ whiten = { kernel = 2, eps = 5e-4, images = 5000, bias_epochs = 3 } }`:
    /// the patch-whitening convolution (section 12.4.2's ZCA made a layer,
    /// as airbench does): `2·C·k²` frozen `k × k` filters, the eigenvectors of
    /// the covariance of the training images' patches scaled by `1/√(λ + ε)`
    /// and their negations, with biases that centre the patches and train
    /// for the first `bias_epochs` epochs (all of them when absent). Fitted on
    /// `images` training images spread evenly over the training set; it must
    /// be the first layer.
    Whiten {
        /// Patch side `k`.
        kernel: usize,
        /// `ε` added to every eigenvalue.
        eps: f64,
        /// Training images the covariance is estimated on.
        images: usize,
        /// Epochs the biases train (`None`: all).
        bias_epochs: Option<usize>,
    },
    /// `{ dropout = 0.5 }`.
    Dropout {
        /// Drop probability.
        p: f64,
    },
    /// `"flatten"`.
    Flatten,
    /// `{ conv = { out = 32, kernel = 3, stride = 1, pad = "same", border = "zero", bias = true } }`.
    Conv {
        /// Output slices (kernels).
        out: usize,
        /// Square kernel side (odd or even).
        kernel: usize,
        /// Stride.
        stride: usize,
        /// `"same"`, `"valid"` or a number of rows/columns per side.
        pad: PadSpec,
        /// How the padding is filled: `"zero"`, `"reflect"`, `"replicate"` or `{ constant = v }`.
        border: strata_nn::Border,
        /// Whether the layer has a bias per output slice.
        bias: bool,
        /// `init = "dirac"`: the first `min(in, out)` kernels start as the
        /// identity ([`strata_nn::Conv2d::dirac`]); otherwise the random law only.
        dirac: bool,
    },
    /// `{ maxpool = 2 }` or `{ maxpool = { size = 3, stride = 2, odd = "ceil" } }`.
    MaxPool {
        /// Window side.
        size: usize,
        /// Stride (default: the window side).
        stride: usize,
        /// The chapter's two policies for odd sizes: drop (`"floor"`) or impute by copying the edge (`"ceil"`).
        ceil: bool,
    },
    /// `"global-avgpool"`: mean over each slice, `[C, H, W] → [C]`.
    GlobalAvgPool,
    /// `"batchnorm"` or `{ batchnorm = { scale = false, momentum = 0.4, eps = 1e-12 } }`:
    /// per feature or per channel.
    BatchNorm {
        /// Whether `γ` is learned (`false`: held at 1, only the shift `β` trains).
        scale: bool,
        /// Weight of each minibatch in the running estimates (default 0.1).
        momentum: f64,
        /// `ε` added to the variance (default 1e-5).
        eps: f64,
    },
    /// `{ residual = { out = 64, stride = 1, kind = "pre-activation", batchnorm = true } }`:
    /// one residual layer (convolutional on blocks, fully connected on vectors).
    Residual(ResidualSpec),
    /// `{ stage = { blocks = 3, out = 32, stride = 2, kind = "original" } }`:
    /// `blocks` residual layers, the first with the stride (and a projection).
    Stage {
        /// Residual layers in the stage.
        blocks: usize,
        /// The layers' settings (the stride applies to the first one).
        block: ResidualSpec,
    },
    /// `{ resnet = { depth = 20, kind = "original", width = 16, bottleneck = false } }`:
    /// a whole CIFAR-style ResNet of depth 6n+2 (or 9n+2 with bottlenecks),
    /// ending in the linear layer to the classes.
    ResNet {
        /// Weighted layers.
        depth: usize,
        /// Original or pre-activation residual layers.
        kind: strata_nn::ResidualKind,
        /// First-stage width.
        width: usize,
        /// Bottleneck blocks.
        bottleneck: bool,
    },
}

/// Padding of a convolution in the spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadSpec {
    /// Output size `⌈n/stride⌉`.
    Same,
    /// No padding.
    Valid,
    /// This many rows/columns on every side.
    Uniform(usize),
}

/// Settings of a residual layer in the spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResidualSpec {
    /// Output width (slices or units).
    pub out: usize,
    /// Stride of the first convolution (1 for fully connected).
    pub stride: usize,
    /// Original `F(x + W₁q + b₁)` or pre-activation `x + W₁q + b₁`.
    pub kind: strata_nn::ResidualKind,
    /// Batch normalisation inside the layer.
    pub batchnorm: bool,
}

impl LayerSpec {
    /// The spec's name of this layer kind.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Linear { .. } => "linear",
            LayerSpec::Relu => "relu",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Conv { .. } => "conv",
            LayerSpec::MaxPool { .. } => "maxpool",
            LayerSpec::GlobalAvgPool => "global-avgpool",
            LayerSpec::BatchNorm { .. } => "batchnorm",
            LayerSpec::Gelu => "gelu",
            LayerSpec::Scale { .. } => "scale",
            LayerSpec::Whiten { .. } => "whiten",
            LayerSpec::Residual(_) => "residual",
            LayerSpec::Stage { .. } => "stage",
            LayerSpec::ResNet { .. } => "resnet",
        }
    }
}

/// Layer kinds the spec knows, for error messages.
pub const LAYER_KINDS: &str =
    "linear, relu, gelu, dropout, flatten, conv, maxpool, global-avgpool, batchnorm, scale, whiten, residual, stage, resnet";

pub(super) fn parse_layer(v: &toml::Value) -> Result<LayerSpec, String> {
    use toml::Value;
    let unknown = |k: &str| format!("unknown layer kind {k:?}; expected one of {LAYER_KINDS}");
    match v {
        Value::String(s) => match s.as_str() {
            "relu" => Ok(LayerSpec::Relu),
            "flatten" => Ok(LayerSpec::Flatten),
            "global-avgpool" | "avgpool" => Ok(LayerSpec::GlobalAvgPool),
            "batchnorm" => Ok(LayerSpec::BatchNorm {
                scale: true,
                momentum: 0.1,
                eps: 1e-5,
            }),
            "gelu" => Ok(LayerSpec::Gelu),
            k => Err(unknown(k)),
        },
        Value::Table(t) if t.len() == 1 => {
            let (k, arg) = t.iter().next().expect("one entry");
            match k.as_str() {
                "linear" => {
                    let (out, bias) = match arg {
                        Value::Table(_) => {
                            let a = table(arg, "linear", &["out", "bias"])?;
                            (a.get("out").cloned().ok_or("linear needs out = <units>")?, flag(a.get("bias"), true, "linear: bias")?)
                        }
                        other => (other.clone(), true),
                    };
                    Ok(LayerSpec::Linear { out: positive(&out, "linear: the number of units")?, bias })
                }
                "gelu" => Ok(LayerSpec::Gelu),
                "scale" => {
                    let factor = number(arg, "scale: the factor")?;
                    if !(factor.is_finite() && factor != 0.0) {
                        return Err(format!("scale: the factor must be a finite non-zero number, got {factor}"));
                    }
                    Ok(LayerSpec::Scale { factor })
                }
                "whiten" => parse_whiten(arg),
                "dropout" => {
                    let p = match arg {
                        Value::Float(f) => *f,
                        Value::Integer(i) => *i as f64,
                        Value::Table(a) => a.get("p").and_then(Value::as_float).ok_or("dropout needs p = <probability>")?,
                        _ => return Err("dropout takes a probability in [0, 1)".into()),
                    };
                    if !(0.0..1.0).contains(&p) {
                        return Err(format!("dropout probability must lie in [0, 1), got {p}"));
                    }
                    Ok(LayerSpec::Dropout { p })
                }
                "relu" => Ok(LayerSpec::Relu),
                "flatten" => Ok(LayerSpec::Flatten),
                "batchnorm" => {
                    let t = table(arg, "batchnorm", &["scale", "momentum", "eps"])?;
                    let momentum = t.get("momentum").map_or(Ok(0.1), |v| number(v, "batchnorm: momentum"))?;
                    if !(momentum > 0.0 && momentum <= 1.0) {
                        return Err(format!("batchnorm: momentum (the newest minibatch's weight in the running estimates) must lie in (0, 1], got {momentum}"));
                    }
                    let eps = t.get("eps").map_or(Ok(1e-5), |v| number(v, "batchnorm: eps"))?;
                    if !(eps.is_finite() && eps > 0.0) {
                        return Err(format!("batchnorm: eps must be a small positive number, got {eps}"));
                    }
                    Ok(LayerSpec::BatchNorm { scale: flag(t.get("scale"), true, "batchnorm: scale")?, momentum, eps })
                }
                "conv" => parse_conv(arg),
                "maxpool" => parse_pool(arg),
                "residual" => Ok(LayerSpec::Residual(parse_residual(table(arg, "residual", RESIDUAL_KEYS)?, "residual")?)),
                "stage" => {
                    let t = table(arg, "stage", &[RESIDUAL_KEYS, &["blocks"]].concat())?;
                    let blocks = positive(t.get("blocks").unwrap_or(&Value::Integer(0)), "stage: blocks")?;
                    Ok(LayerSpec::Stage { blocks, block: parse_residual(t, "stage")? })
                }
                "resnet" => {
                    let t = table(arg, "resnet", &["depth", "kind", "width", "bottleneck"])?;
                    Ok(LayerSpec::ResNet {
                        depth: positive(t.get("depth").unwrap_or(&Value::Integer(0)), "resnet: depth")?,
                        kind: residual_kind(t.get("kind"))?,
                        width: match t.get("width") {
                            None => 16,
                            Some(w) => positive(w, "resnet: width")?,
                        },
                        bottleneck: flag(t.get("bottleneck"), false, "resnet: bottleneck")?,
                    })
                }
                k => Err(unknown(k)),
            }
        }
        _ => Err(format!("a layer is a name such as \"relu\" or a table with one key such as {{ linear = 10 }}; got {v}")),
    }
}

fn positive(v: &toml::Value, what: &str) -> Result<usize, String> {
    match v.as_integer() {
        Some(i) if i > 0 => Ok(i as usize),
        Some(i) => Err(format!("{what} must be a positive integer, got {i}")),
        None => Err(format!("{what} must be a positive integer, got {v}")),
    }
}

const RESIDUAL_KEYS: &[&str] = &["out", "stride", "kind", "batchnorm"];

fn table<'a>(v: &'a toml::Value, what: &str, keys: &[&str]) -> Result<&'a toml::Table, String> {
    let t = v
        .as_table()
        .ok_or_else(|| format!("{what} takes a table of settings, e.g. {{ out = 32 }}"))?;
    if let Some(k) = t.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(format!(
            "{what} has no setting {k:?}; expected one of {keys:?}"
        ));
    }
    Ok(t)
}

fn flag(v: Option<&toml::Value>, default: bool, what: &str) -> Result<bool, String> {
    match v {
        None => Ok(default),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(other) => Err(format!("{what} is true or false, got {other}")),
    }
}

fn opt_positive(v: Option<&toml::Value>, default: usize, what: &str) -> Result<usize, String> {
    v.map_or(Ok(default), |v| positive(v, what))
}

fn residual_kind(v: Option<&toml::Value>) -> Result<strata_nn::ResidualKind, String> {
    match v.map(|v| v.as_str()) {
        None | Some(Some("original")) => Ok(strata_nn::ResidualKind::Original),
        Some(Some("pre-activation")) | Some(Some("preact")) => {
            Ok(strata_nn::ResidualKind::PreActivation)
        }
        _ => Err("kind is \"original\" or \"pre-activation\"".into()),
    }
}

fn parse_residual(t: &toml::Table, what: &str) -> Result<ResidualSpec, String> {
    Ok(ResidualSpec {
        out: positive(
            t.get("out").ok_or(format!("{what} needs out = <width>"))?,
            &format!("{what}: out"),
        )?,
        stride: opt_positive(t.get("stride"), 1, &format!("{what}: stride"))?,
        kind: residual_kind(t.get("kind"))?,
        batchnorm: flag(t.get("batchnorm"), true, &format!("{what}: batchnorm"))?,
    })
}

fn parse_conv(arg: &toml::Value) -> Result<LayerSpec, String> {
    use toml::Value;
    let t = table(
        arg,
        "conv",
        &["out", "kernel", "stride", "pad", "border", "bias", "init"],
    )?;
    let dirac = match t.get("init") {
        None => false,
        Some(Value::String(s)) if s == "dirac" => true,
        Some(Value::String(s)) if s == "random" => false,
        Some(other) => {
            return Err(format!(
                "conv: init is \"random\" (the model's law) or \"dirac\" (identity kernels first), got {other}"
            ))
        }
    };
    let pad = match t.get("pad") {
        None => PadSpec::Valid,
        Some(Value::String(s)) if s == "same" => PadSpec::Same,
        Some(Value::String(s)) if s == "valid" => PadSpec::Valid,
        Some(Value::Integer(i)) if *i >= 0 => PadSpec::Uniform(*i as usize),
        Some(other) => {
            return Err(format!(
                "conv: pad is \"same\", \"valid\" or a non-negative integer, got {other}"
            ))
        }
    };
    let border = match t.get("border") {
        None => strata_nn::Border::Zero,
        Some(Value::String(s)) => match s.as_str() {
            "zero" => strata_nn::Border::Zero,
            "reflect" => strata_nn::Border::Reflect,
            "replicate" => strata_nn::Border::Replicate,
            other => {
                return Err(format!(
                    "conv: border {other:?} is not zero, reflect, replicate or {{ constant = v }}"
                ))
            }
        },
        Some(Value::Table(c)) => match c.get("constant") {
            Some(Value::Float(f)) => strata_nn::Border::Constant(*f),
            Some(Value::Integer(i)) => strata_nn::Border::Constant(*i as f64),
            _ => return Err("conv: border table is { constant = <value> }".into()),
        },
        Some(other) => {
            return Err(format!(
                "conv: border {other} is not zero, reflect, replicate or {{ constant = v }}"
            ))
        }
    };
    Ok(LayerSpec::Conv {
        out: positive(
            t.get("out").ok_or("conv needs out = <number of kernels>")?,
            "conv: out",
        )?,
        kernel: positive(
            t.get("kernel").ok_or("conv needs kernel = <side>")?,
            "conv: kernel",
        )?,
        stride: opt_positive(t.get("stride"), 1, "conv: stride")?,
        pad,
        border,
        bias: flag(t.get("bias"), true, "conv: bias")?,
        dirac,
    })
}

/// A number (integer or float) of a layer setting.
fn number(v: &toml::Value, what: &str) -> Result<f64, String> {
    match v {
        toml::Value::Float(f) => Ok(*f),
        toml::Value::Integer(i) => Ok(*i as f64),
        other => Err(format!("{what} must be a number, got {other}")),
    }
}

fn parse_whiten(arg: &toml::Value) -> Result<LayerSpec, String> {
    let t = table(arg, "whiten", &["kernel", "eps", "images", "bias_epochs"])?;
    let eps = t
        .get("eps")
        .map_or(Ok(5e-4), |v| number(v, "whiten: eps"))?;
    if !(eps.is_finite() && eps > 0.0) {
        return Err(format!(
            "whiten: eps must be a small positive number, got {eps}"
        ));
    }
    let kernel = opt_positive(t.get("kernel"), 2, "whiten: kernel")?;
    if kernel > 8 {
        return Err(format!(
            "whiten: kernel must be at most 8 (2·C·k² filters), got {kernel}"
        ));
    }
    Ok(LayerSpec::Whiten {
        kernel,
        eps,
        images: opt_positive(t.get("images"), 5000, "whiten: images")?,
        bias_epochs: t
            .get("bias_epochs")
            .map(|v| positive(v, "whiten: bias_epochs"))
            .transpose()?,
    })
}

fn parse_pool(arg: &toml::Value) -> Result<LayerSpec, String> {
    if arg.is_integer() {
        let size = positive(arg, "maxpool: size")?;
        return Ok(LayerSpec::MaxPool {
            size,
            stride: size,
            ceil: false,
        });
    }
    let t = table(arg, "maxpool", &["size", "stride", "odd"])?;
    let size = positive(
        t.get("size").ok_or("maxpool needs size = <window side>")?,
        "maxpool: size",
    )?;
    let ceil = match t.get("odd").map(|v| v.as_str()) {
        None | Some(Some("floor")) => false,
        Some(Some("ceil")) => true,
        _ => {
            return Err(
                "maxpool: odd is \"floor\" (drop the odd row/column) or \"ceil\" (impute it)"
                    .into(),
            )
        }
    };
    Ok(LayerSpec::MaxPool {
        size,
        stride: opt_positive(t.get("stride"), size, "maxpool: stride")?,
        ceil,
    })
}
