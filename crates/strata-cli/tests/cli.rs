//! The `strata` binary end to end on the embedded digits: training writes every
//! promised file and reaches a good test accuracy; a resumed run matches an
//! uninterrupted one bit for bit; bad specs and corrupt data fail cleanly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use strata_train::checkpoint::load_tensors;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("the strata binary runs")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn train_on_digits_writes_everything() {
    let out = tmp("train");
    let spec = format!("{EXAMPLES}/digits-softmax.toml");
    let o = strata(&[
        "train",
        &spec,
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "metrics.jsonl",
        "metrics.csv",
        "loss.png",
        "accuracy.png",
        "model.safetensors",
        "spec.toml",
        "checkpoint/state.safetensors",
        "summary.json",
        "confusion.txt",
        "confusion.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let test = summary["test_accuracy"].as_f64().unwrap();
    assert!(test > 0.88, "test accuracy {test}");
    assert!(summary["validation_accuracy"].as_f64().unwrap() > 0.93);
    assert_eq!(summary["parameters"].as_u64(), Some(650));
    assert!(text(&o).contains("test accuracy"));
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 31, "header + one row per epoch");
    assert!(csv.starts_with("step,epoch,loss,lr,train_accuracy,validation_accuracy,seconds"));
    // The saved model evaluates to the same test accuracy.
    let e = strata(&["eval", out.to_str().unwrap()]);
    assert!(e.status.success(), "{}", text(&e));
    assert!(
        text(&e).contains(&format!("test accuracy {:.2}%", 100.0 * test)),
        "{}",
        text(&e)
    );
    // Another data set's 28×28 images do not fit a network trained on 8×8 digits.
    let e = strata(&["eval", out.to_str().unwrap(), "--data", "fashion-mnist"]);
    assert_eq!(e.status.code(), Some(1), "{}", text(&e));
    assert!(
        text(&e).contains("was trained on `digits`; `fashion-mnist` does not fit it"),
        "{}",
        text(&e)
    );
    // A folder without a trained model is named as such.
    let e = strata(&["eval", out.join("checkpoint").to_str().unwrap()]);
    assert_eq!(e.status.code(), Some(2), "{}", text(&e));
    assert!(
        text(&e).contains("is not a trained model folder: it has no spec.toml"),
        "{}",
        text(&e)
    );
}

/// With stderr in a pipe (no terminal for the bar), progress comes as plain
/// lines, as often as `STRATA_PROGRESS_SECONDS` says.
#[test]
fn progress_lines_when_stderr_is_not_a_terminal() {
    let out = tmp("progress");
    let spec = format!("{EXAMPLES}/digits-softmax.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["train", &spec, "--out", out.to_str().unwrap()])
        .args(["--threads", "1", "--epochs", "2"])
        .env("STRATA_PROGRESS_SECONDS", "0")
        .output()
        .expect("the strata binary runs");
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(" step ")).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("epoch 2 step 1/")
            && l.contains("samples/s")
            && l.contains("epoch ETA")),
        "{err}"
    );
    // One line per step at interval 0: both epochs' steps are all reported.
    let steps = lines
        .iter()
        .filter(|l| l.starts_with("epoch 1 step "))
        .count();
    assert!(steps > 1, "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("epoch 1 step {steps}/{steps} "))),
        "{err}"
    );
    // The run folder's spec records --epochs (the example says 30).
    let saved = strata_train::spec::Spec::load(out.join("spec.toml")).unwrap();
    assert_eq!(saved.train.epochs, 2, "{}", saved.source);
}

fn weights(path: &Path) -> Vec<(String, Vec<u32>)> {
    let (t, _) = load_tensors(path).unwrap();
    t.into_iter()
        .map(|(n, v)| (n, v.to_vec().iter().map(|x| x.to_bits()).collect()))
        .collect()
}

#[test]
fn resumed_run_matches_uninterrupted_bit_for_bit() {
    let spec = format!("{EXAMPLES}/digits-mlp.toml");
    let full = tmp("full");
    let o = strata(&[
        "train",
        &spec,
        "--out",
        full.to_str().unwrap(),
        "--epochs",
        "4",
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // A run stopped after epoch 2 (as if killed), then resumed to epoch 4.
    let part = tmp("part");
    let o = strata(&[
        "train",
        &spec,
        "--out",
        part.to_str().unwrap(),
        "--epochs",
        "2",
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = strata(&[
        "train",
        &spec,
        "--out",
        part.to_str().unwrap(),
        "--epochs",
        "4",
        "--threads",
        "1",
        "--resume",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("resuming after epoch 2"), "{}", text(&o));
    assert_eq!(
        weights(&full.join("model.safetensors")),
        weights(&part.join("model.safetensors"))
    );
    let a = std::fs::read_to_string(full.join("metrics.csv")).unwrap();
    let b = std::fs::read_to_string(part.join("metrics.csv")).unwrap();
    let losses = |s: &str| {
        s.lines()
            .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&a), losses(&b), "same losses per epoch");
}

#[test]
fn ctrl_c_stops_after_a_step_and_the_run_resumes() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let spec = format!("{EXAMPLES}/digits-mlp.toml");
    let out = tmp("sigint");
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["train", &spec, "--out", out.to_str().unwrap()])
        .args(["--epochs", "100000", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !out.join("checkpoint").join("state.safetensors").exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: sends SIGINT to our own child, which is still running (not reaped).
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0, "SIGINT could not be sent");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("still running 60 s after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(130), "{msg}");
    assert!(msg.contains("interrupted in epoch"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    // The message names the checkpointed epoch and how to go on from it.
    let epoch: usize = msg
        .split("the checkpoint after epoch ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|e| e.trim_end_matches(';').parse().ok())
        .unwrap_or_else(|| panic!("{msg}"));
    assert!(msg.contains("--resume"), "{msg}");
    let logged = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(logged.lines().count() > epoch, "{logged}");
    let o = strata(&[
        "train",
        &spec,
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        &(epoch + 1).to_string(),
        "--threads",
        "1",
        "--resume",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("resuming after epoch {epoch}")),
        "{}",
        text(&o)
    );
}

#[test]
fn malformed_specs_fail_with_file_line_and_field() {
    let dir = tmp("bad");
    let cases = [
        ("unknown-layer.toml", "[data]\ndataset = \"digits\"\n[model]\nlayers = [\"flatten\",\n  { convolution = 3 }]\n", "model.layers[1]", ":5"),
        ("negative.toml", "[data]\ndataset = \"digits\"\n[model]\nlayers = [\"flatten\", { linear = -3 }]\n", "positive integer", ":4"),
        ("epochs.toml", "[data]\ndataset = \"digits\"\n[model]\nlayers = [\"flatten\", { linear = 10 }]\n[train]\nepochs = 0\n", "train.epochs", ":6"),
        ("typo.toml", "[data]\ndataset = \"digits\"\n[model]\nlayers = [\"flatten\", { linear = 10 }]\n[train]\nepoch = 3\n", "unknown field", ":6"),
        ("shape.toml", "[data]\ndataset = \"digits\"\n[model]\nlayers = [{ linear = 10 }]\n", "flatten", ":4"),
        ("classes.toml", "[data]\ndataset = \"digits\"\n[model]\nlayers = [\"flatten\", { linear = 7 }]\n", "one output per class (10)", ":4"),
        ("syntax.toml", "[data\ndataset = 1\n", "syntax.toml:1", ""),
        ("threads.toml", "[data]\ndataset = \"digits\"\n[model]\nlayers = [\"flatten\", { linear = 10 }]\n[train]\nthreads = 100000\n", "train.threads", ":6"),
    ];
    for (name, body, expect, line) in cases {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let o = strata(&[
            "train",
            p.to_str().unwrap(),
            "--out",
            dir.join("out").to_str().unwrap(),
        ]);
        let msg = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {msg}");
        assert!(
            msg.contains(name) && msg.contains(expect) && msg.contains(line),
            "{name}: {msg}"
        );
        assert!(!msg.contains("panicked"), "{msg}");
    }
    let o = strata(&["train", dir.join("missing.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("missing.toml"));
}

#[test]
fn corrupt_data_fails_cleanly() {
    let dir = tmp("corrupt");
    let data = dir.join("mnist");
    std::fs::create_dir_all(&data).unwrap();
    // A truncated image file: the header promises 60,000 images.
    let mut header = vec![0, 0, 8, 3];
    for d in [60000u32, 28, 28] {
        header.extend_from_slice(&d.to_be_bytes());
    }
    header.extend_from_slice(&[0u8; 100]);
    for f in ["train-images-idx3-ubyte", "t10k-images-idx3-ubyte"] {
        std::fs::write(data.join(f), &header).unwrap();
    }
    for f in ["train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"] {
        std::fs::write(data.join(f), [0, 0, 8, 1, 0, 0, 0, 2, 1, 2]).unwrap();
    }
    let spec = dir.join("s.toml");
    std::fs::write(
        &spec,
        format!(
            "[data]\ndataset = {:?}\n[model]\nlayers = [\"flatten\", {{ linear = 10 }}]\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let o = strata(&[
        "train",
        spec.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert!(msg.contains("train-images-idx3-ubyte"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
}

#[test]
fn missing_data_sets_say_where_they_were_looked_for() {
    let dir = tmp("missing");
    let spec = dir.join("s.toml");
    let layers = "[model]\nlayers = [\"flatten\", { linear = 10 }]\n";
    for (dataset, hint) in [("no-such-set", true), ("./no/such/folder", false)] {
        std::fs::write(&spec, format!("[data]\ndataset = {dataset:?}\n{layers}")).unwrap();
        for cmd in ["train", "inspect"] {
            let o = Command::new(env!("CARGO_BIN_EXE_strata"))
                .args([cmd, spec.to_str().unwrap()])
                .env("STRATA_DATA", &dir)
                .env_remove("STRATA_DOWNLOAD")
                .current_dir(&dir)
                .output()
                .unwrap();
            let msg = text(&o);
            assert_eq!(o.status.code(), Some(1), "{cmd} {dataset}: {msg}");
            assert!(msg.contains("not found; looked in:"), "{msg}");
            // A name is looked for in the folders; a path is only that path.
            assert_eq!(
                msg.contains(&format!("{}", dir.join(dataset).display())),
                hint,
                "{msg}"
            );
            assert_eq!(
                msg.contains("hint: pass the folder that holds `no-such-set/` with --data-dir DIR"),
                hint,
                "{msg}"
            );
            assert!(!msg.contains("panicked"), "{msg}");
        }
    }
}

#[test]
fn inspect_gradcheck_and_sweep() {
    let spec = format!("{EXAMPLES}/digits-mlp.toml");
    let o = strata(&["inspect", &spec]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("linear 64→128") && t.contains("[10]") && t.contains("total: 26122 parameters"),
        "{t}"
    );
    let o = strata(&["gradcheck", &spec]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("layers.7.weight") && text(&o).contains("ok: worst relative error"));
    let out = tmp("sweep");
    let o = strata(&[
        "sweep",
        &format!("{EXAMPLES}/digits-softmax.toml"),
        "--set",
        "optimizer.weight_decay=1e-4,1e-1",
        "--epochs",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let table = std::fs::read_to_string(out.join("sweep.md")).unwrap();
    assert!(
        table.contains("(best)") && table.contains("Held-out test accuracy"),
        "{table}"
    );
    assert!(
        !out.join("run-0/summary.json").exists() || {
            let s: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(out.join("run-0/summary.json")).unwrap(),
            )
            .unwrap();
            s["test_accuracy"].is_null()
        },
        "sweep runs must not touch the test set"
    );
}

#[test]
fn data_list_names_the_places() {
    let o = strata(&["data", "list"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("digits") && text(&o).contains("embedded"),
        "{}",
        text(&o)
    );
}

#[test]
fn preprocessing_and_augmentation_are_saved_and_reused() {
    let out = tmp("whitened");
    let spec = format!("{EXAMPLES}/digits-whitened.toml");
    let o = strata(&[
        "train",
        &spec,
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "5",
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let test = summary["test_accuracy"].as_f64().unwrap();
    assert!(test > 0.75, "test accuracy {test}");
    // The fitted whitening travels inside model.safetensors …
    let (tensors, _) = load_tensors(&out.join("model.safetensors")).unwrap();
    assert!(
        tensors.iter().any(|(n, _)| n.contains("pixel_whiten")),
        "{:?}",
        tensors.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    // … so `strata eval` reproduces the multi-crop test accuracy without refitting.
    let e = strata(&["eval", out.to_str().unwrap()]);
    assert!(e.status.success(), "{}", text(&e));
    assert!(
        text(&e).contains(&format!("test accuracy {:.2}%", 100.0 * test)),
        "{}",
        text(&e)
    );
    // Single-view evaluation (the centre crop) is one flag away.
    let e = strata(&["eval", out.to_str().unwrap(), "--single-crop"]);
    assert!(
        e.status.success() && text(&e).contains("test accuracy"),
        "{}",
        text(&e)
    );
    // The network was sized for the 7×7 crops.
    let i = strata(&["inspect", &spec]);
    assert!(text(&i).contains("linear 49→10"), "{}", text(&i));
}

#[test]
fn out_of_range_options_are_usage_errors() {
    let dir = tmp("badopts");
    let p = dir.join("ok.toml");
    std::fs::write(
        &p,
        "[data]\ndataset = \"digits\"\n[model]\nlayers = [\"flatten\", { linear = 10 }]\n",
    )
    .unwrap();
    for (flag, value, expect) in [
        (
            "--threads",
            "100000",
            "--threads: 100000 threads asked for; at most 1024",
        ),
        ("--epochs", "0", "--epochs must be at least 1"),
    ] {
        let o = strata(&[
            "train",
            p.to_str().unwrap(),
            flag,
            value,
            "--out",
            dir.join("o").to_str().unwrap(),
        ]);
        let msg = text(&o);
        assert_eq!(o.status.code(), Some(2), "{flag}: {msg}");
        assert!(msg.contains(expect), "{flag}: {msg}");
    }
}

#[test]
fn bad_preprocessing_and_augmentation_are_spec_errors() {
    let dir = tmp("badaug");
    for (name, data, expect) in [
        ("p.toml", "preprocess = [\"sharpen\"]", "data.preprocess[0]"),
        (
            "a.toml",
            "augment = { crop = { size = 0 } }",
            "data.augment",
        ),
        ("r.toml", "augment = { rotate = 90.0 }", "data.augment"),
        ("k.toml", "augment = { shear = 1 }", "unknown augmentation"),
        ("e.toml", "augment = { erase = 1.5 }", "erasing probability"),
        (
            "ea.toml",
            "augment = { erase = { max_area = 2.0 } }",
            "erased area",
        ),
        (
            "ek.toml",
            "augment = { erase = { size = 3 } }",
            "erase has no parameter",
        ),
        (
            "es.toml",
            "augment = { erase = \"yes\" }",
            "erase is true, a probability",
        ),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, format!("[data]\ndataset = \"digits\"\n{data}\n[model]\nlayers = [\"flatten\", {{ linear = 10 }}]\n")).unwrap();
        let o = strata(&[
            "train",
            p.to_str().unwrap(),
            "--out",
            dir.join("o").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
        assert!(
            text(&o).contains(expect) && text(&o).contains(":3"),
            "{name}: {}",
            text(&o)
        );
    }
    // A crop larger than the images is caught before training.
    let p = dir.join("big.toml");
    std::fs::write(&p, "[data]\ndataset = \"digits\"\naugment = { crop = { size = 12 } }\n[model]\nlayers = [\"flatten\", { linear = 10 }]\n").unwrap();
    let o = strata(&[
        "train",
        p.to_str().unwrap(),
        "--out",
        dir.join("o").to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && !text(&o).contains("panicked"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("12"), "{}", text(&o));
}

#[test]
fn image_layers_from_the_spec_train_and_gradcheck() {
    let dir = tmp("conv");
    let spec = dir.join("conv.toml");
    std::fs::write(
        &spec,
        r#"[data]
dataset = "digits"
validation = 200
[model]
layers = [
  { conv = { out = 8, kernel = 3, pad = "same", border = "reflect", bias = false } }, "batchnorm", "relu",
  { maxpool = { size = 3, stride = 2, odd = "ceil" } },
  { stage = { blocks = 2, out = 12, stride = 2, kind = "pre-activation" } },
  { residual = { out = 12, kind = "original", batchnorm = false } },
  "global-avgpool", { linear = 10 },
]
[optimizer]
kind = "sgd"
momentum = 0.9
lr = 0.05
[train]
epochs = 4
batch = 32
"#,
    )
    .unwrap();
    let o = strata(&["gradcheck", spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("running") || text(&o).contains("weight"),
        "{}",
        text(&o)
    );
    let o = strata(&[
        "train",
        spec.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/summary.json")).unwrap())
            .unwrap();
    assert!(
        summary["test_accuracy"].as_f64().unwrap() > 0.6,
        "{summary}"
    );
    // Batch-norm running statistics travel with the weights.
    let (tensors, _) = load_tensors(&dir.join("out/model.safetensors")).unwrap();
    assert!(tensors.iter().any(|(n, _)| n.contains("running_mean")));
    let e = strata(&["eval", dir.join("out").to_str().unwrap()]);
    assert!(
        text(&e).contains(&format!(
            "test accuracy {:.2}%",
            100.0 * summary["test_accuracy"].as_f64().unwrap()
        )),
        "{}",
        text(&e)
    );
    // A kernel larger than the (unpadded) image is refused before training, naming the layer.
    std::fs::write(&spec, "[data]\ndataset = \"digits\"\n[model]\nlayers = [{ conv = { out = 4, kernel = 9 } }, \"flatten\", { linear = 10 }]\n").unwrap();
    let o = strata(&[
        "train",
        spec.to_str().unwrap(),
        "--out",
        dir.join("o2").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("model.layers[0] (conv)") && text(&o).contains(":4"),
        "{}",
        text(&o)
    );
}

/// A new run into a folder that holds another run is refused unless asked
/// to replace it, and replacing it removes the old run's checkpoint first
/// (issue 24, defect 7).
#[test]
fn a_folder_holding_another_run_is_refused_without_overwrite() {
    let dir = tmp("reuse");
    let spec = format!("{EXAMPLES}/digits-softmax.toml");
    let out = dir.join("o");
    let args = [
        "train",
        &spec,
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "1",
    ];
    let o = strata(&args);
    assert!(o.status.success(), "{}", text(&o));
    let o = strata(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("holds another run") && text(&o).contains("--overwrite"),
        "{}",
        text(&o)
    );
    let mut again = args.to_vec();
    again.push("--overwrite");
    let o = strata(&again);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("summary.json").is_file());
}

/// `train.matmul_precision = "bf16"` is announced at the start of a run and
/// the run learns; a wrong value is refused naming the file, line and field.
#[test]
fn bf16_matmul_precision_is_announced_and_trains() {
    let dir = tmp("bf16");
    let src = std::fs::read_to_string(format!("{EXAMPLES}/digits-mlp.toml")).unwrap();
    let spec = dir.join("bf16.toml");
    std::fs::write(
        &spec,
        src.replace("[train]", "[train]\nmatmul_precision = \"bf16\""),
    )
    .unwrap();
    let out = dir.join("run");
    let o = strata(&[
        "train",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "5",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    let line = t
        .lines()
        .find(|l| l.starts_with("train.matmul_precision = \"bf16\""))
        .unwrap_or_else(|| panic!("no precision line in {t}"));
    // Which of the two depends on the host (AMX-BF16 and the OS's grant).
    assert!(
        line.contains("multiply on AMX tiles") || line.contains("so the products run in f32"),
        "{line}"
    );
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let acc: f64 = summary
        .split("\"test_accuracy\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no test accuracy in {summary}"));
    assert!(acc >= 0.9, "bf16 digits MLP after 5 epochs: {acc}");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        src.replace("[train]", "[train]\nmatmul_precision = \"fp8\""),
    )
    .unwrap();
    let o = strata(&[
        "train",
        bad.to_str().unwrap(),
        "--out",
        dir.join("r2").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("bad.toml:") && t.contains("train.matmul_precision") && t.contains("\"fp8\""),
        "{t}"
    );
}
