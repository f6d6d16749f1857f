//! `strata export --onnx` / `--torch`: the exported model, run by onnxruntime (in the
//! virtual environment `cargo xtask install` makes), gives strata's logits.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_train::nn::Sequential;
use strata_train::spec::Spec;

/// A convolutional net using every exported layer kind but the linear-only
/// ones: the whitening layer, GELU, a reflected-border convolution, batch
/// norm, ReLU, a ceil-mode max pool, an unbiased "same" convolution, global
/// average pooling, dropout, a linear layer and a scale.
const CNN: &str = r#"
[data]
dataset = "digits"
validation = 0
[model]
layers = [
  { whiten = { kernel = 2, eps = 1e-2, images = 500 } }, "gelu",
  { conv = { out = 8, kernel = 3, pad = 1, border = "reflect" } }, "batchnorm", "relu",
  { maxpool = { size = 3, stride = 2, odd = "ceil" } },
  { conv = { out = 16, kernel = 3, pad = "same", bias = false } }, "batchnorm", "gelu",
  "global-avgpool", { dropout = 0.1 }, { linear = 10 }, { scale = 0.5 },
]
[optimizer]
momentum = 0.9
schedule = { kind = "constant", lr = 0.05 }
[train]
epochs = 2
batch = 64
"#;

/// An MLP behind per-pixel whitening (exported as a Mul and an Add).
const MLP: &str = r#"
[data]
dataset = "digits"
validation = 0
preprocess = ["pixel-whiten"]
[model]
layers = ["flatten", { linear = 32 }, "relu", { dropout = 0.2 }, { linear = 10 }]
[optimizer]
momentum = 0.9
schedule = { kind = "constant", lr = 0.05 }
[train]
epochs = 2
batch = 64
"#;

/// Pre-activation residual layers, one with a projection shortcut.
const PRE_ACT: &str = r#"
[data]
dataset = "digits"
validation = 0
[model]
layers = [
  { conv = { out = 8, kernel = 3, pad = "same" } },
  { residual = { out = 8, stride = 1, kind = "pre-activation", batchnorm = true } },
  { residual = { out = 16, stride = 2, kind = "pre-activation", batchnorm = true } },
  "batchnorm", "relu", "global-avgpool", { linear = 10 },
]
[optimizer]
momentum = 0.9
schedule = { kind = "constant", lr = 0.05 }
[train]
epochs = 2
batch = 64
"#;

/// He et al.'s CIFAR ResNet (original layers: the sum, then ReLU) at depth 8.
const RESNET: &str = r#"
[data]
dataset = "digits"
validation = 0
[model]
layers = [{ resnet = { depth = 8, kind = "original" } }]
[optimizer]
momentum = 0.9
schedule = { kind = "constant", lr = 0.05 }
[train]
epochs = 2
batch = 64
"#;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-onnx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn strata(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &std::process::Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The Python of `cargo xtask install`'s virtual environment.
fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/onnx-venv/bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo xtask install` (or `cargo xtask test`), which makes it",
        p.display()
    );
    p
}

fn f32_file(path: &Path, v: &[f32]) {
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, b).unwrap();
}

/// Trains `spec` briefly, exports it, and checks onnxruntime's logits on 64
/// test images against strata's own.
fn round_trip(name: &str, spec_text: &str) {
    let d = dir(name);
    let spec_path = d.join("spec.toml");
    std::fs::write(&spec_path, spec_text).unwrap();
    let run = d.join("run");
    let sp = spec_path.to_str().unwrap();
    ok(
        &strata(&[
            "train",
            sp,
            "--threads",
            "1",
            "--out",
            run.to_str().unwrap(),
        ]),
        "train",
    );
    let onnx = d.join("model.onnx");
    let said = ok(
        &strata(&[
            "export",
            run.to_str().unwrap(),
            "--onnx",
            onnx.to_str().unwrap(),
        ]),
        "export",
    );
    assert!(said.contains("input `image` [batch, 1, 8, 8]"), "{said}");

    // strata's logits on 64 raw test images.
    let spec = Spec::load(run.join("spec.toml")).unwrap();
    let test = strata_train::data::load("digits", None).unwrap().test;
    let idx: Vec<usize> = (0..64).collect();
    let (x, _) = test.batch(&idx).unwrap();
    let mut model: Sequential<f32> =
        strata_train::build_model(&spec, &test.image_shape(), 10).unwrap();
    let pipeline =
        strata_train::run::load_model(&run.join("model.safetensors"), &mut model, &spec).unwrap();
    let input = match &pipeline {
        Some(p) => p.apply_tensor(&x).unwrap(),
        None => x.clone(),
    };
    let logits = strata_train::logits(&mut model, input).unwrap().to_vec();
    f32_file(&d.join("x.f32"), &x.to_vec());
    f32_file(&d.join("logits.f32"), &logits);

    let script = r#"
import sys, numpy as np, onnx, onnxruntime as ort
d = sys.argv[1]
m = onnx.load(d + "/model.onnx")
onnx.checker.check_model(m, full_check=True)
x = np.fromfile(d + "/x.f32", dtype=np.float32).reshape(64, 1, 8, 8)
want = np.fromfile(d + "/logits.f32", dtype=np.float32).reshape(64, 10)
s = ort.InferenceSession(d + "/model.onnx", providers=["CPUExecutionProvider"])
got = s.run(["logits"], {"image": x})[0]
print(float(np.abs(got - want).max()), float(np.abs(want).max()),
      int((got.argmax(1) == want.argmax(1)).sum()))
"#;
    let o = Command::new(python())
        .args(["-c", script, d.to_str().unwrap()])
        .output()
        .unwrap();
    let out = ok(&o, "onnxruntime");
    let nums: Vec<f64> = out.split_whitespace().map(|v| v.parse().unwrap()).collect();
    let (diff, scale, agree) = (nums[0], nums[1], nums[2]);
    eprintln!("{name}: onnxruntime's logits within {diff} of strata's (largest {scale})");
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "{name}: onnxruntime's logits differ by {diff} (largest logit {scale})"
    );
    assert_eq!(agree, 64.0, "{name}: predictions differ");

    // The PyTorch module definition parses as Python and defines `Net`
    // (running it needs torch, several GB: `cargo xtask interop PYTHON`).
    let py = d.join("model.py");
    ok(
        &strata(&[
            "export",
            run.to_str().unwrap(),
            "--torch",
            py.to_str().unwrap(),
        ]),
        "export --torch",
    );
    let o = Command::new(python())
        .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
        .arg(&py)
        .output()
        .unwrap();
    ok(&o, "model.py parses");
    let src = std::fs::read_to_string(&py).unwrap();
    assert!(src.contains("class Net(nn.Module)"), "{src}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_cnn_with_every_layer_kind_runs_alike_in_onnxruntime() {
    round_trip("cnn", CNN);
}

#[test]
fn pre_activation_residual_layers_run_alike_in_onnxruntime() {
    round_trip("preact", PRE_ACT);
}

#[test]
fn an_original_resnet_runs_alike_in_onnxruntime() {
    round_trip("resnet", RESNET);
}

#[test]
fn per_pixel_whitening_is_exported_before_an_mlp() {
    round_trip("mlp", MLP);
}

#[test]
fn what_cannot_be_exported_is_refused_with_its_layer() {
    let d = dir("refuse");
    let spec = d.join("spec.toml");
    std::fs::write(&spec, MLP.replace("[\"pixel-whiten\"]", "[\"zca\"]")).unwrap();
    let run = d.join("run");
    ok(
        &strata(&[
            "train",
            spec.to_str().unwrap(),
            "--threads",
            "1",
            "--out",
            run.to_str().unwrap(),
        ]),
        "train",
    );
    let onnx = d.join("model.onnx");
    let o = strata(&[
        "export",
        run.to_str().unwrap(),
        "--onnx",
        onnx.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("spec.toml") && err.contains("data.preprocess") && err.contains("zca"),
        "{err}"
    );
    assert!(!onnx.exists(), "nothing is written on failure");
    // Not a model folder at all.
    let o = strata(&[
        "export",
        d.to_str().unwrap(),
        "--onnx",
        onnx.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a trained model folder"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&d);
}
