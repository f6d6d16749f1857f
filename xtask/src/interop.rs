//! `cargo xtask interop PYTHON`: the PyTorch round trip of `strata export
//! --torch` (issue 27), against a Python that has torch and safetensors
//! (several GB, so not in CI). Trains three small networks on the embedded
//! digits (a CNN with batch norm, GELU, a reflected border and ceil pooling;
//! an MLP behind per-pixel whitening; an original ResNet-8), writes each one's
//! model.py, loads strata's model.safetensors into it with PyTorch's
//! `load_state_dict` (strict) and compares PyTorch's logits on 100 test
//! images with strata's.

use std::path::Path;
use std::process::Command;

use strata_nn::Sequential;
use strata_train::run::{train, RunOptions};
use strata_train::spec::Spec;

const COMMON: &str = r#"
[optimizer]
momentum = 0.9
schedule = { kind = "constant", lr = 0.05 }
[train]
epochs = 3
batch = 64
"#;

const NETS: [(&str, &str); 3] = [
    (
        "cnn",
        r#"[data]
dataset = "digits"
validation = 0
[model]
layers = [
  { whiten = { kernel = 2, eps = 1e-2, images = 500 } }, "gelu",
  { conv = { out = 8, kernel = 3, pad = 1, border = "reflect" } }, "batchnorm", "relu",
  { maxpool = { size = 3, stride = 2, odd = "ceil" } },
  { conv = { out = 16, kernel = 3, pad = "same", bias = false } }, "batchnorm", "gelu",
  "global-avgpool", { dropout = 0.1 }, { linear = 10 }, { scale = 0.5 },
]"#,
    ),
    (
        "mlp",
        r#"[data]
dataset = "digits"
validation = 0
preprocess = ["pixel-whiten"]
[model]
layers = ["flatten", { linear = 32 }, "relu", { dropout = 0.2 }, { linear = 10 }]"#,
    ),
    (
        "resnet8",
        r#"[data]
dataset = "digits"
validation = 0
[model]
layers = [{ resnet = { depth = 8, kind = "original" } }]"#,
    ),
];

const CHECK: &str = r#"
import importlib.util, sys
import numpy as np, torch
from safetensors.torch import load_file
d, n = sys.argv[1], int(sys.argv[2])
spec = importlib.util.spec_from_file_location("model", d + "/model.py")
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
net = m.Net()
net.load_state_dict(load_file(d + "/run/model.safetensors"))
net.eval()
x = torch.from_numpy(np.fromfile(d + "/x.f32", dtype=np.float32).reshape(n, 1, 8, 8))
want = np.fromfile(d + "/logits.f32", dtype=np.float32).reshape(n, -1)
with torch.no_grad():
    got = net(x).numpy()
print(float(np.abs(got - want).max()), float(np.abs(want).max()),
      int((got.argmax(1) == want.argmax(1)).sum()), torch.__version__)
"#;

fn f32_file(path: &Path, v: &[f32]) -> Result<(), String> {
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, b).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs the round trip; fails if any network's logits differ by more than
/// 1e-4 of the largest logit or any prediction differs.
pub fn interop(args: &[String]) -> Result<(), String> {
    let python = args
        .first()
        .ok_or("usage: cargo xtask interop PYTHON   (a Python with torch and safetensors)")?;
    let root = std::env::temp_dir().join(format!("strata-interop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let n = 100;
    let mut failed = false;
    for (name, data) in NETS {
        let d = root.join(name);
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let text = format!("{data}\n{COMMON}");
        let spec_path = d.join("spec.toml");
        std::fs::write(&spec_path, &text).map_err(|e| e.to_string())?;
        let spec = Spec::parse(&text, &spec_path).map_err(|e| e.to_string())?;
        let run = d.join("run");
        let opts = RunOptions {
            out: run.clone(),
            threads: Some(1),
            ..RunOptions::default()
        };
        train(&spec, &opts, &mut ()).map_err(|e| format!("{name}: {e}"))?;
        let py = strata_train::torch::export_torch_dir(&run, None).map_err(|e| e.to_string())?;
        std::fs::write(d.join("model.py"), py).map_err(|e| e.to_string())?;
        // strata's logits on the first n test images.
        let spec = Spec::load(run.join("spec.toml")).map_err(|e| e.to_string())?;
        let test = strata_train::data::load("digits", None)
            .map_err(|e| e.to_string())?
            .test;
        let idx: Vec<usize> = (0..n).collect();
        let (x, _) = test.batch(&idx).map_err(|e| e.to_string())?;
        let mut model: Sequential<f32> =
            strata_train::build_model(&spec, &test.image_shape(), test.num_classes())
                .map_err(|e| e.to_string())?;
        let pipeline =
            strata_train::run::load_model(&run.join("model.safetensors"), &mut model, &spec)
                .map_err(|e| e.to_string())?;
        let input = match &pipeline {
            Some(p) => p.apply_tensor(&x).map_err(|e| e.to_string())?,
            None => x.clone(),
        };
        let logits = strata_train::logits(&mut model, input)
            .map_err(|e| e.to_string())?
            .to_vec();
        f32_file(&d.join("x.f32"), &x.to_vec())?;
        f32_file(&d.join("logits.f32"), &logits)?;
        let o = Command::new(python)
            .args(["-c", CHECK, d.to_str().unwrap_or_default(), &n.to_string()])
            .output()
            .map_err(|e| format!("could not run {python}: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "{name}: PyTorch failed:\n{}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        let out = String::from_utf8_lossy(&o.stdout);
        let f: Vec<&str> = out.split_whitespace().collect();
        let num = |i: usize| {
            f.get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        let (diff, scale, agree) = (num(0), num(1), num(2));
        let ok = diff <= 1e-4 * scale.max(1.0) && agree == n as f64;
        failed |= !ok;
        println!(
            "interop {name:<8} torch {}: logits within {diff:.2e} of strata's (largest {scale:.2}), \
             {agree}/{n} predictions equal: {}",
            f.get(3).unwrap_or(&"?"),
            if ok { "ok" } else { "FAILED" }
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    if failed {
        Err("interop: PyTorch does not reproduce strata's logits".into())
    } else {
        Ok(())
    }
}
