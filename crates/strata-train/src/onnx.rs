//! ONNX export of a trained model folder (`strata export MODEL_DIR --onnx
//! FILE`): the spec's network in its evaluation form, with the preprocessing
//! when it is a per-pixel affine map, as an ONNX model (IR version 8, opset
//! 17) that onnxruntime or PyTorch can run.
//!
//! The model's input `image` is `[batch, C, H, W]` float pixels scaled to
//! `[0, 1]` as strata reads them (`strata_data::Dataset::batch`: a byte / 255,
//! a UCI digit / 16); its output `logits` is `[batch, classes]`.
//! Each layer becomes the ONNX operator that computes the same function:
//! linear → `Gemm` (`transB = 1`), convolution → `Conv` (a `Pad` first for a
//! reflected, replicated or constant border), max pooling → `MaxPool`
//! (`ceil_mode` for `ceil = true`), global average pooling →
//! `GlobalAveragePool` + `Flatten`, batch norm → `BatchNormalization` with the
//! running statistics, GELU → its tanh formula in elementary operators,
//! dropout → nothing (it is the identity in evaluation), `scale` → `Mul`,
//! the patch-whitening layer → its frozen `Conv`, a residual layer → its
//! branches and an `Add` (then `Relu` in the original variant). The layers
//! describe themselves ([`strata_nn::Module::lower`]), so a ResNet built
//! from `{ resnet = … }` exports like one written layer by layer.
//!
//! The file is a protobuf message, encoded by prost from the onnx.proto
//! messages transcribed in [`proto`].

use std::path::Path;

use strata_data::FittedPipeline;
use strata_kernels::pad::Border;
use strata_nn::{Lowered, Sequential};
use strata_tensor::Tensor;

use crate::run::{load_model, network_input, RunError};
use crate::spec::Spec;

/// The messages of onnx.proto (<https://github.com/onnx/onnx>, IR version 8)
/// that an exported model uses, with their field numbers, for prost to
/// encode and decode.
pub mod proto {
    /// `ModelProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        /// The IR version.
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        /// Operator sets.
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
        /// "strata".
        #[prost(string, tag = "2")]
        pub producer_name: String,
        /// strata's version.
        #[prost(string, tag = "3")]
        pub producer_version: String,
        /// The computation.
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
    }

    /// `OperatorSetIdProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        /// "" for the default domain.
        #[prost(string, tag = "1")]
        pub domain: String,
        /// The opset version.
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    /// `GraphProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        /// Nodes in topological order.
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        /// The graph's name.
        #[prost(string, tag = "2")]
        pub name: String,
        /// Constant tensors (the weights).
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        /// Graph inputs.
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        /// Graph outputs.
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    /// `NodeProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        /// Input value names.
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        /// Output value names.
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        /// The node's name.
        #[prost(string, tag = "3")]
        pub name: String,
        /// The operator.
        #[prost(string, tag = "4")]
        pub op_type: String,
        /// Its attributes.
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
    }

    /// `AttributeProto` (the kinds an export uses).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        /// The attribute's name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// A float value.
        #[prost(float, tag = "2")]
        pub f: f32,
        /// An integer value.
        #[prost(int64, tag = "3")]
        pub i: i64,
        /// A string value.
        #[prost(bytes = "vec", tag = "4")]
        pub s: Vec<u8>,
        /// Integer values.
        #[prost(int64, repeated, packed = "false", tag = "8")]
        pub ints: Vec<i64>,
        /// `AttributeType`: 1 float, 2 int, 3 string, 7 ints.
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    /// `TensorProto` (dense, little-endian raw data).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        /// The shape.
        #[prost(int64, repeated, packed = "false", tag = "1")]
        pub dims: Vec<i64>,
        /// `DataType`: 1 float, 7 int64.
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        /// The name inputs refer to it by.
        #[prost(string, tag = "8")]
        pub name: String,
        /// The values' bytes.
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
    }

    /// `ValueInfoProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        /// The value's name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Its type.
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    /// `TypeProto` (its `tensor_type` case).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        /// A tensor type.
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TensorTypeProto>,
    }

    /// `TypeProto.Tensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorTypeProto {
        /// `DataType` of the elements.
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        /// The shape.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// `TensorShapeProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        /// The dimensions.
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    /// `TensorShapeProto.Dimension`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        /// A size or a symbolic name.
        #[prost(oneof = "DimValue", tags = "1, 2")]
        pub value: Option<DimValue>,
    }

    /// The value of a [`Dimension`].
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum DimValue {
        /// A size.
        #[prost(int64, tag = "1")]
        DimValue(i64),
        /// A symbolic name (the batch).
        #[prost(string, tag = "2")]
        DimParam(String),
    }
}

use proto::{
    AttributeProto, DimValue, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};

/// ONNX's element types (TensorProto.DataType).
const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// An attribute of a node (AttributeProto).
enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(String),
}

/// The graph being built: nodes, initializers, and a counter for fresh names.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: usize,
}

impl Graph {
    fn fresh(&mut self, stem: &str) -> String {
        self.names += 1;
        format!("{stem}_{}", self.names)
    }

    /// A float initializer `name` of `dims` (row-major values).
    fn tensor(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: name.into(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.to_string()
    }

    /// A 1-D int64 initializer (the `pads` input of `Pad`).
    fn ints(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: INT64,
            name: name.into(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.to_string()
    }

    /// A scalar float constant.
    fn scalar(&mut self, v: f32) -> String {
        let name = self.fresh("const");
        self.tensor(&name, &[], &[v])
    }

    /// Appends node `op` reading `inputs`, returning its (fresh) output name.
    fn node(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node_into(op, inputs, &out, attrs);
        out
    }

    fn node_into(&mut self, op: &str, inputs: &[&str], out: &str, attrs: &[(&str, Attr)]) {
        let attribute = attrs
            .iter()
            .map(|(name, a)| {
                let mut p = AttributeProto {
                    name: (*name).into(),
                    ..AttributeProto::default()
                };
                match a {
                    Attr::Float(f) => (p.f, p.r#type) = (*f, 1),
                    Attr::Int(i) => (p.i, p.r#type) = (*i, 2),
                    Attr::Str(s) => (p.s, p.r#type) = (s.as_bytes().to_vec(), 3),
                    Attr::Ints(v) => (p.ints, p.r#type) = (v.clone(), 7),
                }
                p
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_string()).collect(),
            output: vec![out.into()],
            name: out.into(),
            op_type: op.into(),
            attribute,
        });
    }
}

/// A ValueInfoProto of a float tensor with a symbolic batch dimension.
fn value_info(name: &str, per_sample: &[usize]) -> ValueInfoProto {
    let dim = std::iter::once(DimValue::DimParam("batch".into()))
        .chain(per_sample.iter().map(|&d| DimValue::DimValue(d as i64)))
        .map(|v| Dimension { value: Some(v) })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

/// What [`export_dir`] wrote.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The ONNX file's bytes.
    pub bytes: Vec<u8>,
    /// The input's per-sample shape `[C, H, W]` (raw pixels).
    pub input: [usize; 3],
    /// Classes (the width of `logits`).
    pub classes: usize,
    /// ONNX nodes in the graph.
    pub nodes: usize,
}

/// Exports the trained model folder `model_dir` (`spec.toml` +
/// `model.safetensors`). The data set is opened (from `data_dir` first) only
/// to learn the image shape and the classes.
pub fn export_dir(model_dir: &Path, data_dir: Option<&Path>) -> Result<Exported, RunError> {
    let t = load_trained(model_dir, data_dir)?;
    let bytes = export_model(&t.model, t.pipeline.as_ref(), t.raw, t.classes)
        .map_err(|e| RunError::Other(format!("{}: {e}", model_dir.join("spec.toml").display())))?;
    let nodes = count_nodes(&bytes);
    Ok(Exported {
        bytes,
        input: t.raw,
        classes: t.classes,
        nodes,
    })
}

/// A trained model folder, loaded for export.
pub(crate) struct Trained {
    /// The spec the model was trained from.
    pub spec: Spec,
    /// The network with its weights.
    pub model: Sequential<f32>,
    /// The fitted preprocessing, if the spec has any.
    pub pipeline: Option<FittedPipeline>,
    /// Raw image shape `[C, H, W]`.
    pub raw: [usize; 3],
    /// Classes.
    pub classes: usize,
    /// The classes' names.
    pub names: Vec<String>,
}

/// Loads `model_dir` (`spec.toml` + `model.safetensors`); the data set is
/// opened (from `data_dir` first) only for the image shape and the classes.
pub(crate) fn load_trained(model_dir: &Path, data_dir: Option<&Path>) -> Result<Trained, RunError> {
    for file in ["spec.toml", "model.safetensors"] {
        if !model_dir.join(file).is_file() {
            return Err(RunError::Usage(format!(
                "{} is not a trained model folder: it has no {file}",
                model_dir.display()
            )));
        }
    }
    let spec = Spec::load(model_dir.join("spec.toml"))?;
    // Only the image shape and the classes are needed: no windows are cut
    // for `mnist-canvas` or `data.background`.
    let (raw, mut names) = strata_data::resolve(&spec.data.dataset, data_dir)?.describe()?;
    if spec.data.background.is_some() {
        names.push(strata_data::canvas::BACKGROUND.into());
    }
    let classes = names.len();
    let image = spec
        .preprocess
        .iter()
        .try_fold(raw, |s, p| p.output_shape(s))
        .map_err(|e| RunError::Other(format!("data.preprocess: {e}")))?;
    let input = network_input(&spec, image)?;
    let mut model: Sequential<f32> = crate::build_model(&spec, &input, classes)?;
    let pipeline = load_model(&model_dir.join("model.safetensors"), &mut model, &spec)?;
    if input != image {
        return Err(RunError::Other(format!(
            "{}: the network's input {input:?} is a crop of the preprocessed image {image:?} \
             (data.augment's crop size); export takes networks that see the whole image",
            model_dir.display()
        )));
    }
    Ok(Trained {
        spec,
        model,
        pipeline,
        raw,
        classes,
        names,
    })
}

/// Graph nodes in an exported file (for the CLI's report).
fn count_nodes(bytes: &[u8]) -> usize {
    use prost::Message;
    ModelProto::decode(bytes)
        .ok()
        .and_then(|m| m.graph)
        .map_or(0, |g| g.node.len())
}

/// The per-pixel affine map `x ↦ a·x + b` that `pipeline` is, probed at 0, 1
/// and a third image; an error names the first step when it is not one.
pub(crate) fn pixel_affine(
    pipeline: &FittedPipeline,
    raw: [usize; 3],
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let n: usize = raw.iter().product();
    let shape = [1, raw[0], raw[1], raw[2]];
    let run = |v: Vec<f32>| -> Result<Vec<f32>, String> {
        let x = Tensor::from_vec(v, &shape).map_err(|e| e.to_string())?;
        let y = pipeline.apply_tensor(&x).map_err(|e| e.to_string())?;
        if y.shape() != shape {
            return Err(format!("it changes the image's shape to {:?}", y.shape()));
        }
        Ok(y.to_vec())
    };
    let not_affine = |why: String| {
        let steps: Vec<&str> = pipeline.config().iter().map(|p| p.name()).collect();
        format!(
            "data.preprocess {steps:?} is not a per-pixel affine map ({why}), so it cannot be \
             written as ONNX operators before the network; per-pixel whitening can"
        )
    };
    let b = run(vec![0.0; n]).map_err(not_affine)?;
    let one = run(vec![1.0; n]).map_err(not_affine)?;
    let a: Vec<f32> = one.iter().zip(&b).map(|(o, z)| o - z).collect();
    let probe: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
    let got = run(probe.clone()).map_err(not_affine)?;
    for i in 0..n {
        let want = a[i] * probe[i] + b[i];
        if (got[i] - want).abs() > 1e-4 * (1.0 + want.abs()) {
            return Err(not_affine(format!(
                "pixel {i} gives {} where a·x + b gives {want}",
                got[i]
            )));
        }
    }
    Ok((a, b))
}

/// Appends the nodes computing `layer` on `cur`, returning the result's name.
fn emit(g: &mut Graph, layer: &Lowered<f32>, cur: String) -> String {
    match layer {
        Lowered::Linear { weight, bias, relu } => {
            let wn = g.fresh("weight");
            let w = g.tensor(&wn, weight.shape(), &weight.to_vec());
            let bn = g.fresh("bias");
            let b = g.tensor(&bn, bias.shape(), &bias.to_vec());
            let y = g.node("Gemm", &[&cur, &w, &b], &[("transB", Attr::Int(1))]);
            if *relu {
                g.node("Relu", &[&y], &[])
            } else {
                y
            }
        }
        Lowered::Conv {
            weight,
            bias,
            stride,
            pad,
            border,
        } => {
            let (t, l, b, r) = (
                pad.top as i64,
                pad.left as i64,
                pad.bottom as i64,
                pad.right as i64,
            );
            // A border other than zeros is a Pad before an unpadded Conv.
            let (input, conv_pads) = match border {
                Border::Zero => (cur, vec![t, l, b, r]),
                other => {
                    let (mode, value) = match other {
                        Border::Reflect => ("reflect", None),
                        Border::Replicate => ("edge", None),
                        Border::Constant(v) => ("constant", Some(*v as f32)),
                        Border::Zero => ("constant", Some(0.0)),
                    };
                    let pn = g.fresh("pads");
                    let pads = g.ints(&pn, &[0, 0, t, l, 0, 0, b, r]);
                    let mut ins = vec![cur, pads];
                    if let Some(v) = value {
                        ins.push(g.scalar(v));
                    }
                    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                    let padded = g.node("Pad", &refs, &[("mode", Attr::Str(mode.into()))]);
                    (padded, vec![0; 4])
                }
            };
            let wn = g.fresh("weight");
            let mut ins = vec![input, g.tensor(&wn, weight.shape(), &weight.to_vec())];
            if let Some(b) = bias {
                let bn = g.fresh("bias");
                ins.push(g.tensor(&bn, b.shape(), &b.to_vec()));
            }
            let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
            let k = weight.shape();
            g.node(
                "Conv",
                &refs,
                &[
                    ("kernel_shape", Attr::Ints(vec![k[2] as i64, k[3] as i64])),
                    ("pads", Attr::Ints(conv_pads)),
                    (
                        "strides",
                        Attr::Ints(stride.iter().map(|&v| v as i64).collect()),
                    ),
                ],
            )
        }
        Lowered::BatchNorm {
            gamma,
            beta,
            mean,
            var,
            eps,
        } => {
            let mut ins = vec![cur];
            for (stem, t) in [
                ("gamma", gamma),
                ("beta", beta),
                ("mean", mean),
                ("var", var),
            ] {
                let n = g.fresh(stem);
                ins.push(g.tensor(&n, t.shape(), &t.to_vec()));
            }
            let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
            g.node(
                "BatchNormalization",
                &refs,
                &[("epsilon", Attr::Float(*eps as f32))],
            )
        }
        Lowered::Relu => g.node("Relu", &[&cur], &[]),
        Lowered::Gelu => {
            // ½x(1 + tanh(√(2/π)(x + 0.044715x³))), strata's GELU.
            let (c3, k) = (
                g.scalar(0.044715),
                g.scalar((2.0 / std::f32::consts::PI).sqrt()),
            );
            let (half, one) = (g.scalar(0.5), g.scalar(1.0));
            let x2 = g.node("Mul", &[&cur, &cur], &[]);
            let x3 = g.node("Mul", &[&x2, &cur], &[]);
            let cx3 = g.node("Mul", &[&x3, &c3], &[]);
            let inner = g.node("Add", &[&cur, &cx3], &[]);
            let scaled = g.node("Mul", &[&inner, &k], &[]);
            let t = g.node("Tanh", &[&scaled], &[]);
            let t1 = g.node("Add", &[&t, &one], &[]);
            let hx = g.node("Mul", &[&cur, &half], &[]);
            g.node("Mul", &[&hx, &t1], &[])
        }
        Lowered::Scale(f) => {
            let f = g.scalar(*f as f32);
            g.node("Mul", &[&cur, &f], &[])
        }
        Lowered::Identity => cur,
        Lowered::Flatten => g.node("Flatten", &[&cur], &[("axis", Attr::Int(1))]),
        Lowered::MaxPool {
            window,
            stride,
            ceil,
        } => g.node(
            "MaxPool",
            &[&cur],
            &[
                (
                    "kernel_shape",
                    Attr::Ints(window.iter().map(|&v| v as i64).collect()),
                ),
                (
                    "strides",
                    Attr::Ints(stride.iter().map(|&v| v as i64).collect()),
                ),
                ("ceil_mode", Attr::Int(i64::from(*ceil))),
            ],
        ),
        Lowered::GlobalAvgPool => {
            let pooled = g.node("GlobalAveragePool", &[&cur], &[]);
            g.node("Flatten", &[&pooled], &[("axis", Attr::Int(1))])
        }
        Lowered::Sequence(layers) => layers.iter().fold(cur, |c, l| emit(g, l, c)),
        Lowered::Residual {
            pre,
            body,
            shortcut,
            relu,
        } => {
            let h = emit(g, pre, cur.clone());
            let skip = match shortcut {
                Some(s) => emit(g, s, h.clone()),
                None => cur,
            };
            let f = emit(g, body, h);
            let sum = g.node("Add", &[&f, &skip], &[]);
            if *relu {
                g.node("Relu", &[&sum], &[])
            } else {
                sum
            }
        }
    }
}

/// The ONNX bytes of `model` (weights loaded) for raw images of shape `raw`
/// and `classes` outputs, after `pipeline` when it is per-pixel affine.
pub fn export_model(
    model: &Sequential<f32>,
    pipeline: Option<&FittedPipeline>,
    raw: [usize; 3],
    classes: usize,
) -> Result<Vec<u8>, String> {
    let mut g = Graph::default();
    let mut cur = "image".to_string();
    if let Some(p) = pipeline {
        let (a, b) = pixel_affine(p, raw)?;
        let an = g.tensor("preprocess.scale", &raw, &a);
        let bn = g.tensor("preprocess.shift", &raw, &b);
        let scaled = g.node("Mul", &[&cur, &an], &[]);
        cur = g.node("Add", &[&scaled, &bn], &[]);
    }
    let mut shape = raw.to_vec();
    for (i, layer) in model.layers().iter().enumerate() {
        let lowered = layer.lower(&shape).ok_or_else(|| {
            format!(
                "model.layers[{i}] ({}) cannot be written as ONNX operators",
                layer.describe()
            )
        })?;
        cur = emit(&mut g, &lowered, cur);
        shape = layer
            .output_shape(&shape)
            .map_err(|e| format!("model.layers[{i}]: {e}"))?;
    }
    if shape != [classes] {
        return Err(format!(
            "the network ends in shape {shape:?}, not the {classes} classes"
        ));
    }
    // The last node's output is the graph's output.
    g.node_into("Identity", &[&cur], "logits", &[]);
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "strata".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            node: g.nodes,
            name: "strata".into(),
            initializer: g.initializers,
            input: vec![value_info("image", &raw)],
            output: vec![value_info("logits", &[classes])],
        }),
    };
    Ok(prost::Message::encode_to_vec(&model))
}
