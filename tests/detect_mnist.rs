//! End to end, detection by windows (section 12.4): the example detector
//! spec trained for a few seconds on a subset of `mnist-canvas` finds most
//! digits on benchmark canvases, both ways of scoring windows agree, and bad
//! ground truth or options are refused with the file and field named.

use std::path::PathBuf;
use strata_train::detect::{
    detect_images, read_truth, DetectJob, DetectOptions, Scoring, MNIST_CANVAS,
};
use strata_train::run::{train, RunOptions};
use strata_train::spec::Spec;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn data_dir() -> PathBuf {
    root().join("../shared/data")
}

/// Trains examples/mnist-detect.toml on 12,000 windows for 2 epochs into a
/// temporary folder.
fn trained() -> PathBuf {
    let spec = Spec::load_with(
        root().join("examples/mnist-detect.toml"),
        &[
            "data.subset=12000".into(),
            "data.test_subset=2000".into(),
            "data.validation=0".into(),
            "train.epochs=2".into(),
            "optimizer.warmup_steps=20".into(),
        ],
    )
    .expect("the example spec parses");
    let out = std::env::temp_dir().join(format!("strata-detect-e2e-{}", std::process::id()));
    let opts = RunOptions {
        out: out.clone(),
        data_dir: Some(data_dir()),
        overwrite: true,
        ..RunOptions::default()
    };
    let s = train(&spec, &opts, &mut ()).expect("training runs");
    // 11 classes: the digits and "background".
    assert!(s.test_accuracy.unwrap() > 0.9, "{:?}", s.test_accuracy);
    out
}

#[test]
fn a_quickly_trained_detector_finds_the_digits_on_canvases() {
    let model = trained();
    let out = model.join("detect");
    let job = DetectJob {
        model_dir: model.clone(),
        images: vec![format!("{MNIST_CANVAS}:40")],
        data_dir: Some(data_dir()),
        eval: true,
        out: Some(out.clone()),
        draw: 2,
        ..DetectJob::default()
    };
    let r = detect_images(&job, &mut |_, _| {}).expect("detection runs");
    assert!(
        r.convolutional,
        "the example network runs fully convolutionally"
    );
    let m = r.metrics.expect("metrics with --eval");
    eprintln!(
        "40 canvases: mAP@0.5 {:.3}, precision {:.3}, recall {:.3}, {:.2} s",
        m.map50, m.precision, m.recall, r.seconds
    );
    assert!(m.recall > 0.8, "recall {}", m.recall);
    assert!(m.precision > 0.7, "precision {}", m.precision);
    assert!(m.map50 > 0.7, "mAP@0.5 {}", m.map50);
    for f in [
        "detections.json",
        "metrics.json",
        "truth.json",
        "mnist-canvas-0000.png",
        "mnist-canvas-0001.boxes.png",
    ] {
        assert!(out.join(f).is_file(), "{f} written");
    }

    // The canvases written as PNG files, with the truth.json written beside
    // them, measure the same as the generated canvases.
    let files = DetectJob {
        images: vec![
            out.join("mnist-canvas-0000.png").display().to_string(),
            out.join("mnist-canvas-0001.png").display().to_string(),
        ],
        truth: Some(out.join("truth.json")),
        out: None,
        ..job.clone()
    };
    let from_files = detect_images(&files, &mut |_, _| {}).unwrap();
    let two = DetectJob {
        images: vec![format!("{MNIST_CANVAS}:2")],
        out: None,
        ..job.clone()
    };
    let generated = detect_images(&two, &mut |_, _| {}).unwrap();
    assert_eq!(from_files.detections, generated.detections);
    assert_eq!(
        from_files.metrics.unwrap().recall,
        generated.metrics.unwrap().recall
    );

    // Window by window finds the same objects as the convolutional path.
    let windows = |scoring| DetectJob {
        options: DetectOptions {
            scoring,
            ..DetectOptions::default()
        },
        ..two.clone()
    };
    let a = detect_images(&windows(Scoring::Windows), &mut |_, _| {}).unwrap();
    let b = detect_images(&windows(Scoring::Convolutional), &mut |_, _| {}).unwrap();
    assert!(!a.convolutional && b.convolutional);
    assert_eq!(a.detections, b.detections);
    let (ma, mb) = (a.metrics.unwrap(), b.metrics.unwrap());
    assert!((ma.map50 - mb.map50).abs() < 1e-9);

    // Bad input: a missing truth for --eval, a bad canvas count, bad truth.
    let e = detect_images(
        &DetectJob {
            truth: None,
            ..files.clone()
        },
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no ground truth"), "{e}");
    let e = detect_images(
        &DetectJob {
            images: vec![format!("{MNIST_CANVAS}:0")],
            ..two.clone()
        },
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("mnist-canvas:N"), "{e}");
    // A file that is no image is refused by name.
    let junk = out.join("junk.png");
    std::fs::write(&junk, b"not an image at all").unwrap();
    let e = detect_images(
        &DetectJob {
            images: vec![junk.display().to_string()],
            eval: false,
            truth: None,
            ..files.clone()
        },
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("junk.png") && e.contains("neither a PNG nor a JPEG"),
        "{e}"
    );
    let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let bad = out.join("bad-truth.json");
    for (text, field) in [
        (r#"{"images": 3}"#, "images"),
        (r#"{"images": [{"objects": []}]}"#, "images[0].file"),
        (
            r#"{"images": [{"file": "a.png", "objects": [{"class": "x", "box": [0, 0, 1, 1]}]}]}"#,
            "images[0].objects[0].class",
        ),
        (
            r#"{"images": [{"file": "a.png", "objects": [{"class": "3", "box": [5, 0, 1, 1]}]}]}"#,
            "images[0].objects[0].box",
        ),
        ("{", "not JSON"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let e = read_truth(&bad, &names).unwrap_err().to_string();
        assert!(
            e.contains(&bad.display().to_string()) && e.contains(field),
            "{text}: {e}"
        );
    }
    std::fs::remove_dir_all(&model).ok();
}

#[test]
fn data_background_adds_a_class_and_is_checked() {
    // The UCI digits (8×8) with background windows: 11 classes, and the
    // classifier still learns (the background windows are easy to tell).
    let text = r#"
[data]
dataset = "digits"
background = 0.5
[model]
layers = ["flatten", { linear = 64 }, "relu", { linear = 11 }]
[optimizer]
momentum = 0.9
schedule = { kind = "constant", lr = 0.05 }
[train]
epochs = 4
batch = 32
"#;
    let spec = Spec::parse(text, "background.toml").unwrap();
    let out = std::env::temp_dir().join(format!("strata-background-{}", std::process::id()));
    let opts = RunOptions {
        out: out.clone(),
        overwrite: true,
        ..RunOptions::default()
    };
    let s = train(&spec, &opts, &mut ()).expect("training runs");
    assert!(s.test_accuracy.unwrap() > 0.8, "{:?}", s.test_accuracy);
    std::fs::remove_dir_all(&out).ok();
    // Out of range, and a network with one output too few.
    for bad in ["background = 0.0", "background = -1.0", "background = 11.0"] {
        let e = Spec::parse(&text.replace("background = 0.5", bad), "bad.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.toml") && e.contains("data.background"),
            "{e}"
        );
    }
    let ten = Spec::parse(&text.replace("linear = 11", "linear = 10"), "ten.toml").unwrap();
    let e = train(&ten, &opts, &mut ()).unwrap_err().to_string();
    assert!(e.contains("11"), "{e}");
}
