//! The driver on the embedded digits: it learns, reports, and stops on divergence.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_data::digits_split;
use strata_nn::{Flatten, Linear, Relu, Sequential};
use strata_optim::{Method, Optimizer, Schedule};
use strata_train::{evaluate, fit, FitOptions, OnEpoch, TrainError};

#[test]
fn softmax_classifier_learns_digits() {
    let data = digits_split();
    let (train, validation) = data.train.split_validation(300, 1).unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut net = Sequential::<f32>::new();
    net.push(Flatten)
        .push(Linear::new(64, 10, &mut rng).unwrap());
    let mut opt = Optimizer::new(
        Method::Momentum { mu: 0.9 },
        1e-4,
        Schedule::InverseEpoch { a: 10.0, b: 1.0 },
    )
    .unwrap();
    let opts = FitOptions {
        epochs: 30,
        batch: 32,
        seed: 3,
        ..FitOptions::default()
    };
    let mut seen = 0;
    let history = fit(
        &mut net,
        &mut opt,
        &train,
        Some(&validation),
        &opts,
        OnEpoch(|_: &strata_train::EpochReport| seen += 1),
    )
    .unwrap();
    assert_eq!(seen, 30);
    let last = history.last().unwrap();
    assert!(
        last.loss < history[0].loss,
        "loss should fall: {} → {}",
        history[0].loss,
        last.loss
    );
    assert!(last.validation_accuracy.unwrap() > 0.9, "{last:?}");
    assert_eq!(last.lr, 1.0 / (10.0 + 29.0));
    let eval = evaluate(&mut net, &data.test, 100).unwrap();
    eprintln!("digits softmax classifier: test accuracy {}", eval.accuracy);
    assert!(eval.accuracy > 0.9, "test accuracy {}", eval.accuracy);
    assert_eq!(
        eval.confusion.iter().flatten().sum::<usize>(),
        data.test.len()
    );
}

#[test]
fn dead_units_are_reported_per_layer() {
    let data = digits_split();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let mut net = Sequential::<f32>::new();
    net.push(Flatten)
        .push(Linear::new(64, 32, &mut rng).unwrap())
        .push(Relu)
        .push(Linear::new(32, 10, &mut rng).unwrap());
    let mut opt = Optimizer::new(
        Method::Momentum { mu: 0.9 },
        0.0,
        Schedule::Constant { lr: 0.05 },
    )
    .unwrap();
    let h = fit(
        &mut net,
        &mut opt,
        &data.train,
        None,
        &FitOptions {
            epochs: 1,
            batch: 64,
            seed: 1,
            ..FitOptions::default()
        },
        (),
    )
    .unwrap();
    assert_eq!(h[0].dead_units.len(), 1);
    assert_eq!(h[0].dead_units[0].0, "layers.2");
    assert!((0.0..=1.0).contains(&h[0].dead_units[0].1));
}

#[test]
fn divergence_stops_with_a_clear_message() {
    let data = digits_split();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut net = Sequential::<f32>::new();
    net.push(Flatten)
        .push(Linear::new(64, 64, &mut rng).unwrap())
        .push(Relu)
        .push(Linear::new(64, 10, &mut rng).unwrap());
    let mut opt = Optimizer::new(Method::Sgd, 0.0, Schedule::Constant { lr: 1e30 }).unwrap();
    let e = fit(
        &mut net,
        &mut opt,
        &data.train,
        None,
        &FitOptions {
            epochs: 5,
            batch: 32,
            seed: 1,
            ..FitOptions::default()
        },
        (),
    )
    .map(|h| h.len())
    .unwrap_err();
    assert!(matches!(e, TrainError::Diverged { .. }), "{e}");
    assert!(e.to_string().contains("smaller learning rate"), "{e}");
}

#[test]
fn a_network_that_does_not_fit_the_data_is_refused_up_front() {
    let data = digits_split();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut net = Sequential::<f32>::new();
    net.push(Flatten)
        .push(Linear::new(784, 10, &mut rng).unwrap());
    let mut opt = Optimizer::new(Method::Sgd, 0.0, Schedule::Constant { lr: 0.1 }).unwrap();
    let e = fit(
        &mut net,
        &mut opt,
        &data.train,
        None,
        &FitOptions {
            epochs: 1,
            batch: 32,
            seed: 1,
            ..FitOptions::default()
        },
        (),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("layers.1") && msg.contains("[784]") && msg.contains("[64]"),
        "{msg}"
    );
}

/// Stops after `after` steps, counting the steps it sees.
struct StopAfter {
    after: u64,
    steps: u64,
}

impl strata_train::Observer for StopAfter {
    fn on_step(&mut self, info: &strata_train::StepInfo) {
        self.steps = info.step;
    }
    fn stop_requested(&self) -> bool {
        self.steps >= self.after
    }
}

#[test]
fn a_stop_request_ends_training_after_the_current_step() {
    let data = digits_split();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut net = Sequential::<f32>::new();
    net.push(Flatten)
        .push(Linear::new(64, 10, &mut rng).unwrap());
    let mut opt = Optimizer::new(Method::Sgd, 0.0, Schedule::Constant { lr: 0.01 }).unwrap();
    let opts = FitOptions {
        epochs: 5,
        batch: 100,
        seed: 1,
        ..FitOptions::default()
    };
    let steps_per_epoch = data.train.len().div_ceil(100);
    let mut stop = StopAfter {
        after: steps_per_epoch as u64 + 3,
        steps: 0,
    };
    let e = fit(&mut net, &mut opt, &data.train, None, &opts, &mut stop)
        .map(|h| h.len())
        .unwrap_err();
    match e {
        TrainError::Interrupted { epoch, done, steps } => {
            assert_eq!((epoch, done, steps), (2, 3, steps_per_epoch));
        }
        e => panic!("expected an interruption, got {e}"),
    }
    assert_eq!(
        opt.steps(),
        steps_per_epoch as u64 + 3,
        "no step after the request"
    );
}

/// Label smoothing: the loss cannot fall below the targets' entropy
/// `H(q)`, `q = (1 − ε)·onehot + ε/C`, and the classifier still learns.
#[test]
fn label_smoothing_keeps_the_loss_above_the_targets_entropy() {
    let data = digits_split();
    let (train, validation) = data.train.split_validation(300, 1).unwrap();
    let run = |eps: f64| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut net = Sequential::<f32>::new();
        net.push(Flatten)
            .push(Linear::new(64, 64, &mut rng).unwrap())
            .push(Relu)
            .push(Linear::new(64, 10, &mut rng).unwrap());
        let mut opt = Optimizer::new(
            Method::Momentum { mu: 0.9 },
            0.0,
            Schedule::Constant { lr: 0.05 },
        )
        .unwrap();
        let opts = FitOptions {
            epochs: 40,
            batch: 32,
            seed: 3,
            label_smoothing: eps,
            ..FitOptions::default()
        };
        let h = fit(
            &mut net,
            &mut opt,
            &train,
            Some(&validation),
            &opts,
            OnEpoch(|_: &strata_train::EpochReport| {}),
        )
        .unwrap();
        h.last().unwrap().clone()
    };
    let (eps, c) = (0.1, 10.0);
    let (hit, spread) = (1.0 - eps + eps / c, eps / c);
    let floor = -hit * f64::ln(hit) - (c - 1.0) * spread * f64::ln(spread);
    let (plain, smoothed) = (run(0.0), run(eps));
    // Without smoothing the loss goes well below the floor; with it, never.
    assert!(plain.loss < floor / 4.0, "plain loss {}", plain.loss);
    assert!(
        smoothed.step_losses.iter().all(|&l| l > floor - 1e-4),
        "a smoothed loss below H(q) = {floor}"
    );
    assert!(
        smoothed.loss < floor + 0.1,
        "smoothed loss {}",
        smoothed.loss
    );
    assert!(smoothed.validation_accuracy.unwrap() > 0.9, "{smoothed:?}");
}

/// A run started in a folder where a killed run left `<name>.tmp<pid>`
/// files removes them (issue 24, defect 9); other files stay.
#[test]
fn a_new_run_removes_stray_temporary_files() {
    let out = std::env::temp_dir().join(format!("strata-stray-{}", std::process::id()));
    std::fs::create_dir_all(out.join("checkpoint")).unwrap();
    for f in [
        "loss.tmp4242",
        "checkpoint/state.tmp17",
        "notes.tmpx",
        "keep.txt",
    ] {
        std::fs::write(out.join(f), b"x").unwrap();
    }
    let spec = strata_train::spec::Spec::parse(
        "[data]\ndataset = \"digits\"\n[model]\nlayers = [\"flatten\", { linear = 10 }]\n[train]\nepochs = 1\n",
        "stray.toml",
    )
    .unwrap();
    let opts = strata_train::run::RunOptions {
        out: out.clone(),
        ..Default::default()
    };
    let summary = strata_train::run::train(&spec, &opts, &mut ()).unwrap();
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    assert!(!out.join("loss.tmp4242").exists());
    assert!(!out.join("checkpoint/state.tmp17").exists());
    assert!(out.join("notes.tmpx").exists() && out.join("keep.txt").exists());
    std::fs::remove_dir_all(&out).ok();
}
