//! Quick versions of the example specs behind the README's results table
//! (examples/*.toml): each trains through `strata_train::run::train`, exactly
//! as `strata train` does, on a subset for an epoch or two, and must reach a
//! lower but meaningful test accuracy, so a regression in any layer, kernel,
//! optimiser or data path shows up here rather than in an hour-long run.

use std::path::{Path, PathBuf};
use strata_train::run::{train, RunOptions};
use strata_train::spec::Spec;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Trains `examples/<name>.toml` with `overrides` and returns its test accuracy.
fn quick(name: &str, overrides: &[&str]) -> f64 {
    let spec_path = root().join("examples").join(format!("{name}.toml"));
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let spec = Spec::load_with(&spec_path, &overrides).expect("example spec parses");
    let out = std::env::temp_dir().join(format!("strata-example-{name}-{}", std::process::id()));
    let opts = RunOptions {
        out: out.clone(),
        data_dir: Some(root().join("../shared/data")),
        epochs: None,
        threads: None,
        resume: false,
        skip_test: false,
        overwrite: true,
        group: None,
    };
    let summary = train(&spec, &opts, &mut ()).expect("training runs");
    assert!(Path::new(&out).join("summary.json").is_file());
    std::fs::remove_dir_all(&out).ok();
    let acc = summary.test_accuracy.expect("a test accuracy");
    eprintln!(
        "{name}: test accuracy {acc:.4} after {:.1} s",
        summary.train_seconds
    );
    acc
}

#[test]
fn digits_softmax_full_spec() {
    // The whole spec: a second of training.
    let acc = quick("digits-softmax", &[]);
    assert!(acc >= 0.95, "digits-softmax test accuracy {acc}");
}

#[test]
fn mnist_mlp_quick() {
    let acc = quick(
        "mnist-mlp",
        &[
            "data.subset=8000",
            "data.validation=1000",
            "data.test_subset=2000",
            "train.epochs=2",
        ],
    );
    assert!(acc >= 0.85, "mnist-mlp test accuracy {acc}");
}

#[test]
fn mnist_cnn_quick() {
    let acc = quick(
        "mnist-cnn",
        &[
            "data.subset=6000",
            "data.validation=1000",
            "data.test_subset=2000",
            "train.epochs=2",
            // A short run warms up over its first steps, not the full run's hundreds.
            "optimizer.warmup_steps=10",
        ],
    );
    assert!(acc >= 0.9, "mnist-cnn test accuracy {acc}");
}

#[test]
fn fashion_cnn_quick() {
    let acc = quick(
        "fashion-cnn",
        &[
            "data.subset=5000",
            "data.validation=1000",
            "data.test_subset=2000",
            "train.epochs=2",
            // A short run warms up over its first steps, not the full run's hundreds.
            "optimizer.warmup_steps=10",
        ],
    );
    assert!(acc >= 0.7, "fashion-cnn test accuracy {acc}");
}

#[test]
fn fashion_resnet_quick() {
    let acc = quick(
        "fashion-resnet",
        &[
            "data.subset=3000",
            "data.validation=500",
            "data.test_subset=1000",
            // Four epochs (80 steps): after two, the batch-norm running
            // estimates still trail the fast-moving weights and the test
            // accuracy swung from 20 % to 55 % with the seed (2026-12-03);
            // after four it is 70–77 % for seeds 1–4.
            "train.epochs=4",
            // A short run warms up over its first steps, not the full run's hundreds.
            "optimizer.warmup_steps=10",
        ],
    );
    assert!(acc >= 0.6, "fashion-resnet test accuracy {acc}");
}

#[test]
fn cifar10_resnet20_quick() {
    let acc = quick(
        "cifar10-resnet20",
        &[
            "data.subset=3000",
            "data.validation=500",
            "data.test_subset=1000",
            // Four epochs (80 steps), as for fashion-resnet: after two the
            // test accuracy ranged over 13–23 % with the seed and with the
            // rounding of the kernel gradient's algorithm (2026-12-07);
            // after four it is 34–39 % for seeds 1–4.
            "train.epochs=4",
            // A short run warms up over its first steps, not the full run's hundreds.
            "optimizer.warmup_steps=10",
        ],
    );
    // Chance is 10 %; the subsets are random, so all ten classes appear.
    assert!(acc >= 0.25, "cifar10-resnet20 test accuracy {acc}");
}

#[test]
fn cifar10_fast_quick() {
    let acc = quick(
        "cifar10-fast",
        &[
            "data.subset=2000",
            "data.test_subset=1000",
            "train.epochs=2",
            "train.batch=200",
        ],
    );
    // Chance is 10 %. The whitening layer is fitted on the 2,000 images.
    assert!(acc >= 0.25, "cifar10-fast test accuracy {acc}");
}

#[test]
fn fashion_fast_quick() {
    let acc = quick(
        "fashion-fast",
        &[
            "data.subset=2000",
            "data.validation=200",
            "data.test_subset=1000",
            "train.epochs=2",
            // 36 steps: at batch 200 (18 steps) seeds 1–4 spread over 61–74 %;
            // at 100 they give 76.4–77.7 % (2026-12-04).
            "train.batch=100",
        ],
    );
    // Chance is 10 %. The whitening layer is fitted on the 1,800 training images.
    assert!(acc >= 0.7, "fashion-fast test accuracy {acc}");
}
