//! `strata viz`: each picture is a valid PNG of the expected size, and the
//! data drawn are right (the optimisers' paths against hand-computed steps,
//! the kernels are the model's, the dead-unit series are the run's).

use std::path::PathBuf;
use strata_train::run::{train, RunOptions};
use strata_train::spec::Spec;
use strata_train::viz::{self, ValleyOptions};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-viz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn valley_paths_are_the_optimisers_own_steps() {
    let o = ValleyOptions::default();
    let (lr, eps) = (o.lr, o.eps);
    let [x0, y0] = o.start;
    let paths = viz::valley_paths(&o, false).unwrap();
    let names: Vec<&str> = paths.iter().map(|p| p.method).collect();
    assert_eq!(names, ["sgd", "momentum", "adagrad", "rmsprop", "adam"]);
    for p in &paths {
        assert_eq!(p.points.len(), o.steps + 1);
        assert_eq!(p.points[0], o.start, "{}", p.method);
    }
    // SGD on ½(εx² + y²): x_k = (1 − ηε)^k x₀, y_k = (1 − η)^k y₀.
    let sgd = &paths[0].points;
    let k = o.steps as i32;
    let want = [x0 * (1.0 - lr * eps).powi(k), y0 * (1.0 - lr).powi(k)];
    let last = sgd[o.steps];
    assert!((last[0] - want[0]).abs() < 1e-12 && (last[1] - want[1]).abs() < 1e-12);
    // First steps, by hand: momentum's first step is SGD's (v = η∇);
    // Adagrad and Adam move each coordinate by ≈ η (their first steps
    // divide the gradient by its own size); RMSprop by η/√(1 − Δ).
    let g = [eps * x0, y0];
    let step = |p: &viz::OptimPath| [p.points[1][0] - x0, p.points[1][1] - y0];
    let close = |a: [f64; 2], b: [f64; 2], what: &str| {
        assert!(
            (a[0] - b[0]).abs() < 1e-5 && (a[1] - b[1]).abs() < 1e-5,
            "{what}: {a:?} vs {b:?}"
        )
    };
    close(step(&paths[1]), [-lr * g[0], -lr * g[1]], "momentum");
    let sign = [-lr * g[0].signum(), -lr * g[1].signum()];
    close(step(&paths[2]), sign, "adagrad");
    close(step(&paths[4]), sign, "adam");
    let r = lr / (1.0f64 - 0.9).sqrt();
    close(
        step(&paths[3]),
        [-r * g[0].signum(), -r * g[1].signum()],
        "rmsprop",
    );
    // On the rotated, translated copy SGD still ends at its minimum.
    let long = ValleyOptions {
        steps: 3000,
        ..ValleyOptions::default()
    };
    let turned = viz::valley_paths(&long, true).unwrap();
    let end = turned[0].points[3000];
    assert!(
        (end[0] - long.centre[0]).abs() < 1e-6 && (end[1] - long.centre[1]).abs() < 1e-6,
        "{end:?}"
    );
    // The picture.
    let d = dir("valley");
    let png = d.join("valley.png");
    let (plain, _) = viz::valley_plot(&png, &o).unwrap();
    assert_eq!(plain, paths, "the plot draws the same paths");
    assert_eq!(png_size(&png), (1400, 650));
    // Bad options are refused, not drawn.
    let bad = ValleyOptions {
        lr: -1.0,
        ..ValleyOptions::default()
    };
    assert!(viz::valley_paths(&bad, false).unwrap_err().contains("--lr"));
    let _ = std::fs::remove_dir_all(&d);
}

const CNN: &str = r#"
[data]
dataset = "digits"
validation = 200
[model]
layers = [
  { conv = { out = 6, kernel = 3, pad = "same" } }, "relu", { maxpool = 2 },
  "flatten", { linear = 32 }, "relu", { linear = 10 },
]
[optimizer]
momentum = 0.9
schedule = { kind = "constant", lr = 0.05 }
[train]
epochs = 3
batch = 64
"#;

#[test]
fn filters_and_dead_units_of_a_trained_cnn() {
    let d = dir("cnn");
    let spec = Spec::parse(CNN, d.join("cnn.toml")).unwrap();
    let run = d.join("run");
    let opts = RunOptions {
        out: run.clone(),
        threads: Some(1),
        ..RunOptions::default()
    };
    train(&spec, &opts, &mut ()).unwrap();

    // Filters: the model's own first kernels, 6 tiles of 3×3 upscaled.
    let kernels = viz::first_conv_kernels(&run, None).unwrap();
    assert_eq!(kernels.shape(), [6, 1, 3, 3]);
    let (tensors, _) =
        strata_train::checkpoint::load_tensors(&run.join("model.safetensors")).unwrap();
    let saved = tensors
        .iter()
        .find(|(n, _)| n == "layers.0.weight")
        .map(|(_, t)| t.to_vec())
        .unwrap();
    assert_eq!(kernels.to_vec(), saved);
    let png = d.join("filters.png");
    assert_eq!(viz::filters_plot(&run, None, &png).unwrap(), [6, 1, 3, 3]);
    let (w, h) = png_size(&png);
    // One row of 6 tiles of 3·32 pixels with 2-pixel padding.
    assert_eq!((w, h), (6 * 96 + 7 * 2, 96 + 2 * 2));

    // Dead units: one series per ReLU layer, one point per epoch, the
    // values of metrics.jsonl.
    let png = d.join("dead.png");
    let series = viz::dead_units_plot(&run, &png).unwrap();
    assert_eq!(png_size(&png), (900, 500));
    assert_eq!(series.len(), 2, "{series:?}");
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|v| v["kind"] == "epoch")
        .unwrap();
    for (name, pts) in &series {
        assert_eq!(pts.len(), 3);
        assert_eq!(pts[2].0, 3);
        assert_eq!(Some(pts[2].1), last["dead_units"][name].as_f64(), "{name}");
    }
    // A folder without a run is refused with its file named.
    let e = viz::dead_units_plot(&d, &png).unwrap_err().to_string();
    assert!(e.contains("metrics.jsonl"), "{e}");
    // Decision regions are for models of points of the plane.
    let e = viz::regions_plot(&run, None, &png).unwrap_err().to_string();
    assert!(e.contains("points of the plane"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn regions_of_a_two_layer_classifier_on_the_moons() {
    let d = dir("moons");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/moons-mlp.toml"
    ))
    .unwrap();
    let spec = Spec::parse(&text, d.join("moons-mlp.toml")).unwrap();
    let run = d.join("run");
    let opts = RunOptions {
        out: run.clone(),
        threads: Some(1),
        ..RunOptions::default()
    };
    let summary = train(&spec, &opts, &mut ()).unwrap();
    assert!(summary.test_accuracy.unwrap() > 0.95, "{summary:?}");
    let png = d.join("regions.png");
    let r = viz::regions_plot(&run, None, &png).unwrap();
    assert_eq!(png_size(&png), (900, 900));
    assert_eq!(r.classes.len(), r.cells * r.cells);
    // The lines are the first linear layer's 16 units, w₁x + w₂y + b = 0.
    let (tensors, _) =
        strata_train::checkpoint::load_tensors(&run.join("model.safetensors")).unwrap();
    let get = |n: &str| {
        tensors
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, t)| t.to_vec())
            .unwrap()
    };
    let (w, b) = (get("layers.1.weight"), get("layers.1.bias"));
    assert_eq!(r.lines.len(), 16);
    for (u, l) in r.lines.iter().enumerate() {
        assert_eq!(*l, [w[2 * u] as f64, w[2 * u + 1] as f64, b[u] as f64]);
    }
    // The regions classify the training points as the network does: the
    // cell under each point mostly holds the point's own class.
    let train_set = strata_train::data::load("moons", None).unwrap().train;
    let (x, labels) = train_set
        .batch(&(0..train_set.len()).collect::<Vec<_>>())
        .unwrap();
    let x = x.to_vec();
    let [x0, x1, y0, y1] = r.window;
    let hits = labels
        .iter()
        .enumerate()
        .filter(|&(k, &c)| {
            let i = ((x[2 * k] as f64 - x0) / (x1 - x0) * r.cells as f64) as usize;
            let j = ((x[2 * k + 1] as f64 - y0) / (y1 - y0) * r.cells as f64) as usize;
            r.classes[j.min(r.cells - 1) * r.cells + i.min(r.cells - 1)] == c
        })
        .count();
    assert!(hits as f64 > 0.95 * labels.len() as f64, "{hits}");
    // Regions are for points of the plane only.
    let e = viz::regions_plot(&d, None, &png).unwrap_err().to_string();
    assert!(e.contains("not a trained model folder"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn augment_grid_shows_each_epochs_views() {
    let d = dir("augment");
    let with = Spec::parse(
        "[data]\ndataset = \"digits\"\npreprocess = [\"pixel-whiten\"]\n\
         augment = { crop = { size = 8, pad = 1 }, flip = \"alternate\" }\n\
         [model]\nlayers = [\"flatten\", { linear = 10 }]\n",
        d.join("a.toml"),
    )
    .unwrap();
    let png = d.join("augment.png");
    let g = viz::augment_plot(&with, None, 3, 5, &png).unwrap();
    assert_eq!(g.images.shape(), [15, 1, 8, 8]);
    // 5 tiles of 8·12 pixels across, 3 down, 2 pixels of padding.
    assert_eq!(png_size(&png), (5 * 96 + 6 * 2, 3 * 96 + 4 * 2));
    let v = g.images.to_vec();
    let row = |r: usize| &v[r * 5 * 64..(r + 1) * 5 * 64];
    assert_ne!(row(0), row(1), "alternate flips change every other epoch");
    // Without augmentation every epoch shows the same preprocessed images.
    let plain = Spec::parse(
        "[data]\ndataset = \"digits\"\npreprocess = [\"pixel-whiten\"]\n\
         [model]\nlayers = [\"flatten\", { linear = 10 }]\n",
        d.join("p.toml"),
    )
    .unwrap();
    let g = viz::augment_plot(&plain, None, 2, 5, &png).unwrap();
    let v = g.images.to_vec();
    assert_eq!(v[..5 * 64], v[5 * 64..]);
    assert!(viz::augment_plot(&plain, None, 0, 5, &png).is_err());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn learning_rates_picture_holds_each_rates_losses() {
    let d = dir("lr");
    let spec = Spec::parse(
        "[data]\ndataset = \"digits\"\nvalidation = 0\n[model]\nlayers = [\"flatten\", { linear = 10 }]\n\
         [optimizer]\nschedule = { kind = \"inverse-epoch\", a = 10.0, b = 1.0 }\n[train]\nbatch = 64\n",
        d.join("s.toml"),
    )
    .unwrap();
    let png = d.join("lr.png");
    let runs = viz::learning_rates_plot(&spec, &[1e-4, 1.0], 1, None, &png).unwrap();
    assert_eq!(png_size(&png), (900, 500));
    assert_eq!(runs.len(), 2);
    // One epoch of the 1,497 digits training images at batch 64: 24 steps.
    let steps = strata_train::data::load("digits", None)
        .unwrap()
        .train
        .len()
        .div_ceil(64);
    for r in &runs {
        assert_eq!(r.losses.len(), steps, "η = {}", r.lr);
        assert!(r.diverged_at.is_none());
    }
    // Too small a rate barely moves; a good one brings the loss down.
    let last = |r: &viz::RateRun| *r.losses.last().unwrap();
    assert!(last(&runs[1]) < 0.5 * last(&runs[0]), "{runs:?}");
    assert!(viz::learning_rates_plot(&spec, &[-1.0], 1, None, &png).is_err());
    let _ = std::fs::remove_dir_all(&d);
}
