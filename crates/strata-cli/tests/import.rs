//! `strata import`: a state dict PyTorch wrote (tests/data/torch_cnn.py, run
//! once with torch; its output is committed, so this test needs no torch)
//! loads into the matching spec and gives PyTorch's logits.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_train::nn::Sequential;
use strata_train::spec::Spec;

const SPEC: &str = r#"
[data]
dataset = "digits"
[model]
layers = [
  { conv = { out = 4, kernel = 3, pad = 1, bias = false } }, "batchnorm", "relu",
  { maxpool = 2 }, "flatten", { linear = 10 },
]
"#;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-import-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn import(spec: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("import")
        .arg(spec)
        .arg(data("torch_cnn.safetensors"))
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn a_pytorch_state_dict_gives_pytorchs_logits() {
    let d = dir("ok");
    let spec = d.join("cnn.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let out = d.join("model");
    let o = import(&spec, &out);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        said.contains("1.weight") && said.contains("layers.1.gamma"),
        "{said}"
    );
    assert!(said.contains("1 batch counters left out"), "{said}");

    let (check, _) =
        strata_train::checkpoint::load_tensors(&data("torch_cnn_check.safetensors")).unwrap();
    let get = |n: &str| check.iter().find(|(k, _)| k == n).unwrap().1.clone();
    let (x, want) = (get("x"), get("logits").to_vec());
    let s = Spec::load(out.join("spec.toml")).unwrap();
    let mut model: Sequential<f32> = strata_train::build_model(&s, &[1, 8, 8], 10).unwrap();
    strata_train::run::load_model(&out.join("model.safetensors"), &mut model, &s).unwrap();
    let got = strata_train::logits(&mut model, x).unwrap().to_vec();
    let diff = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff < 1e-5,
        "strata's logits differ from PyTorch's by {diff}"
    );
    // The folder is a model folder: strata eval takes it.
    let e = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("eval")
        .arg(&out)
        .output()
        .unwrap();
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_state_dict_that_does_not_fit_the_spec_is_refused_by_name() {
    let d = dir("bad");
    let spec = d.join("cnn.toml");
    // Eight slices instead of four: the convolution's kernels do not fit.
    std::fs::write(&spec, SPEC.replace("out = 4", "out = 8")).unwrap();
    let o = import(&spec, &d.join("m"));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("0.weight") && err.contains("[4, 1, 3, 3]"),
        "{err}"
    );
    // No batch norm: its tensors in the file have no place.
    std::fs::write(
        &spec,
        SPEC.replace("\"batchnorm\", ", "")
            .replace("{ linear = 10 }", "\"flatten\""),
    )
    .unwrap();
    let o = import(&spec, &d.join("m"));
    assert!(!o.status.success());
    assert!(!d.join("m").join("model.safetensors").exists());
    let _ = std::fs::remove_dir_all(&d);
}
