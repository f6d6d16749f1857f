//! PyTorch export of a trained model folder (`strata export MODEL_DIR --torch
//! model.py`): a module definition whose parameter and buffer names are
//! strata's, so that
//!
//! ```python
//! net = Net()
//! net.load_state_dict(safetensors.torch.load_file("model.safetensors"))
//! net.eval()
//! ```
//!
//! takes `model.safetensors` as it is (per-pixel whitening included) and
//! computes strata's logits from the same `[batch, C, H, W]` pixels in
//! `[0, 1]`. The layers are written from their own description
//! ([`strata_nn::Module::lower`]), as the ONNX export is.

use std::fmt::Write;
use std::path::Path;

use strata_data::Preprocess;
use strata_kernels::pad::Border;
use strata_nn::Lowered;

use crate::onnx::load_trained;
use crate::run::RunError;

/// The helper classes every exported file starts with.
const PRELUDE: &str = r#"import torch
import torch.nn.functional as F
from torch import nn


class Seq(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Linear(nn.Module):
    def __init__(self, inputs, outputs, relu):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(outputs, inputs))
        self.bias = nn.Parameter(torch.zeros(outputs))
        self.relu = relu

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        return F.relu(y) if self.relu else y


class Conv(nn.Module):
    # pads: (left, right, top, bottom), as F.pad takes them.
    def __init__(self, cin, cout, kernel, stride, pads, mode, value, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, cin, kernel[0], kernel[1]))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.stride, self.pads, self.mode, self.value = stride, pads, mode, value

    def forward(self, x):
        if any(self.pads):
            if self.mode == "constant":
                x = F.pad(x, self.pads, mode="constant", value=self.value)
            else:
                x = F.pad(x, self.pads, mode=self.mode)
        return F.conv2d(x, self.weight, self.bias, self.stride)


class BatchNorm(nn.Module):
    def __init__(self, channels, eps):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.eps = eps

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.gamma,
                            self.beta, False, 0.0, self.eps)


class Fn(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


class Residual(nn.Module):
    def __init__(self, pre, body, shortcut, relu):
        super().__init__()
        self.pre, self.body, self.shortcut, self.relu = pre, body, shortcut, relu

    def forward(self, x):
        h = self.pre(x)
        skip = self.shortcut(h) if self.shortcut is not None else x
        y = self.body(h) + skip
        return F.relu(y) if self.relu else y


class Preprocess(nn.Module):
    # strata's fitted preprocessing: the raw image shape and the steps' tensors.
    def __init__(self, steps):
        super().__init__()
        self.register_buffer("input_shape", torch.zeros(3))
        self.steps = list(steps)
        for name, step in self.steps:
            self.add_module(name, step)

    def forward(self, x):
        for _, step in self.steps:
            x = step(x)
        return x


class Step(nn.Module):
    # One step, registered under strata's name for it.
    def __init__(self, name, module):
        super().__init__()
        self.name = name
        self.add_module(name, module)

    def forward(self, x):
        return getattr(self, self.name)(x)


class PixelWhiten(nn.Module):
    # strata's per-pixel whitening: (x - mean) / scale, scale = max(std, eps).
    def __init__(self, shape):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("scale", torch.ones(shape))

    def forward(self, x):
        return (x - self.mean) / self.scale
"#;

fn list(v: &[usize]) -> String {
    let items: Vec<String> = v.iter().map(usize::to_string).collect();
    format!("({},)", items.join(", "))
}

/// A Python float literal that round-trips `v` exactly.
fn float(v: f64) -> String {
    format!("{v:?}")
}

/// The Python expression constructing `layer` (its weights zeros until
/// loaded).
fn module(layer: &Lowered<f32>) -> String {
    match layer {
        Lowered::Linear { weight, relu, .. } => {
            let s = weight.shape();
            format!(
                "Linear({}, {}, {})",
                s[1],
                s[0],
                if *relu { "True" } else { "False" }
            )
        }
        Lowered::Conv {
            weight,
            bias,
            stride,
            pad,
            border,
        } => {
            let s = weight.shape();
            let (mode, value) = match border {
                Border::Zero => ("constant", 0.0),
                Border::Constant(v) => ("constant", *v),
                Border::Reflect => ("reflect", 0.0),
                Border::Replicate => ("replicate", 0.0),
            };
            format!(
                "Conv({}, {}, {}, {}, {}, \"{mode}\", {}, {})",
                s[1],
                s[0],
                list(&[s[2], s[3]]),
                list(stride),
                list(&[pad.left, pad.right, pad.top, pad.bottom]),
                float(value),
                if bias.is_some() { "True" } else { "False" }
            )
        }
        Lowered::BatchNorm { gamma, eps, .. } => {
            format!("BatchNorm({}, {})", gamma.numel(), float(*eps))
        }
        Lowered::Relu => "Fn(F.relu)".into(),
        Lowered::Gelu => "Fn(lambda x: F.gelu(x, approximate=\"tanh\"))".into(),
        Lowered::Scale(f) => format!("Fn(lambda x: x * {})", float(*f)),
        Lowered::Identity => "Fn(lambda x: x)".into(),
        Lowered::Flatten => "Fn(lambda x: x.flatten(1))".into(),
        Lowered::MaxPool {
            window,
            stride,
            ceil,
        } => format!(
            "Fn(lambda x: F.max_pool2d(x, {}, {}, ceil_mode={}))",
            list(window),
            list(stride),
            if *ceil { "True" } else { "False" }
        ),
        Lowered::GlobalAvgPool => "Fn(lambda x: x.mean((2, 3)))".into(),
        Lowered::Sequence(layers) => {
            let items: Vec<String> = layers.iter().map(module).collect();
            format!("Seq([{}])", items.join(", "))
        }
        Lowered::Residual {
            pre,
            body,
            shortcut,
            relu,
        } => format!(
            "Residual({}, {}, {}, {})",
            module(pre),
            module(body),
            shortcut.as_deref().map_or("None".into(), module),
            if *relu { "True" } else { "False" }
        ),
    }
}

/// The Python source of the model in `model_dir` (see the module docs).
pub fn export_torch_dir(model_dir: &Path, data_dir: Option<&Path>) -> Result<String, RunError> {
    let t = load_trained(model_dir, data_dir)?;
    let at = model_dir.join("spec.toml");
    let mut steps = Vec::new();
    if let Some(p) = &t.pipeline {
        for (i, step) in p.config().iter().enumerate() {
            match step {
                Preprocess::PixelWhiten { .. } => steps.push((i, step.name())),
                other => {
                    return Err(RunError::Other(format!(
                        "{}: data.preprocess[{i}] ({}) has no PyTorch form in the export \
                         (per-pixel whitening has)",
                        at.display(),
                        other.name()
                    )))
                }
            }
        }
    }
    let mut layers = Vec::new();
    let mut shape = t.raw.to_vec();
    for (i, layer) in t.model.layers().iter().enumerate() {
        let lowered = layer.lower(&shape).ok_or_else(|| {
            RunError::Other(format!(
                "{}: model.layers[{i}] ({}) cannot be written as PyTorch",
                at.display(),
                layer.describe()
            ))
        })?;
        layers.push(module(&lowered));
        shape = layer
            .output_shape(&shape)
            .map_err(|e| RunError::Other(format!("model.layers[{i}]: {e}")))?;
    }
    let [c, h, w] = t.raw;
    let mut py = String::new();
    let _ = writeln!(
        py,
        "# The network of {} in PyTorch, written by `strata export --torch`.\n\
         # Its parameter and buffer names are strata's:\n\
         #   net = Net()\n\
         #   net.load_state_dict(safetensors.torch.load_file(\"model.safetensors\"))\n\
         #   net.eval()\n\
         #   logits = net(images)  # [batch, {c}, {h}, {w}] pixels in [0, 1] -> [batch, {}]\n",
        model_dir.display(),
        t.classes
    );
    py.push_str(PRELUDE);
    py.push_str("\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n");
    // strata's names: preprocess.input_shape, preprocess.<i>.<step>.<tensor>,
    // layers.<i>.<…>.
    if !steps.is_empty() {
        let _ = writeln!(py, "        self.preprocess = Preprocess([");
        for (i, name) in &steps {
            let _ = writeln!(
                py,
                "            (\"{i}\", Step(\"{name}\", PixelWhiten(({c}, {h}, {w})))),"
            );
        }
        let _ = writeln!(py, "        ])");
    }
    let _ = writeln!(py, "        self.layers = nn.ModuleList([");
    for l in &layers {
        let _ = writeln!(py, "            {l},");
    }
    let _ = writeln!(py, "        ])\n");
    py.push_str("    def forward(self, x):\n");
    if !steps.is_empty() {
        py.push_str("        x = self.preprocess(x)\n");
    }
    py.push_str("        for layer in self.layers:\n            x = layer(x)\n        return x\n");
    Ok(py)
}
