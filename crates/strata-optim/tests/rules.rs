//! Update rules checked against hand computations and on the chapter's valley.

use strata_autograd::Param;
use strata_optim::{Method, OptimError, Optimizer, Schedule};
use strata_tensor::Tensor;

fn param(v: &[f64], decay: bool) -> Param<f64> {
    Param::new(Tensor::from_slice(v, &[v.len()]).unwrap(), decay)
}

fn step_with(opt: &mut Optimizer<f64>, p: &mut Param<f64>, g: &[f64]) {
    let g = Tensor::from_slice(g, &[g.len()]).unwrap();
    opt.step([("p".to_string(), p)], |_| Some(g.clone()), 0)
        .unwrap();
}

const LR: f64 = 0.1;

#[test]
fn two_steps_by_hand() {
    let g1 = [0.5, -1.0];
    let g2 = [0.25, 2.0];
    let constant = Schedule::Constant { lr: LR };

    // Momentum: v1 = η g1; θ1 = θ0 − v1; v2 = μ v1 + η g2; θ2 = θ1 − v2.
    let mut p = param(&[1.0, 1.0], true);
    let mut o = Optimizer::new(Method::Momentum { mu: 0.9 }, 0.0, constant.clone()).unwrap();
    step_with(&mut o, &mut p, &g1);
    step_with(&mut o, &mut p, &g2);
    let v1 = [LR * 0.5, -LR];
    let v2 = [0.9 * v1[0] + LR * 0.25, 0.9 * v1[1] + LR * 2.0];
    let want = [1.0 - v1[0] - v2[0], 1.0 - v1[1] - v2[1]];
    assert_close(&p.value.to_vec(), &want);

    // Adagrad: c accumulates g²; θ −= η g/(√c + α).
    let a = 1e-6;
    let mut p = param(&[1.0, 1.0], true);
    let mut o = Optimizer::new(Method::Adagrad { alpha: a }, 0.0, constant.clone()).unwrap();
    step_with(&mut o, &mut p, &g1);
    step_with(&mut o, &mut p, &g2);
    let mut want = [1.0, 1.0];
    let mut c = [0.0, 0.0];
    for g in [g1, g2] {
        for i in 0..2 {
            c[i] += g[i] * g[i];
            want[i] -= LR * g[i] / (c[i].sqrt() + a);
        }
    }
    assert_close(&p.value.to_vec(), &want);

    // RMSprop: c ← Δc + (1 − Δ)g².
    let mut p = param(&[1.0, 1.0], true);
    let mut o = Optimizer::new(
        Method::RmsProp {
            decay: 0.9,
            alpha: a,
        },
        0.0,
        constant.clone(),
    )
    .unwrap();
    step_with(&mut o, &mut p, &g1);
    step_with(&mut o, &mut p, &g2);
    let mut want = [1.0, 1.0];
    let mut c = [0.0, 0.0];
    for g in [g1, g2] {
        for i in 0..2 {
            c[i] = 0.9 * c[i] + 0.1 * g[i] * g[i];
            want[i] -= LR * g[i] / (c[i].sqrt() + a);
        }
    }
    assert_close(&p.value.to_vec(), &want);

    // Adam with bias correction.
    let (b1, b2, eps) = (0.9, 0.999, 1e-8);
    let mut p = param(&[1.0, 1.0], true);
    let mut o = Optimizer::new(
        Method::Adam {
            beta1: b1,
            beta2: b2,
            eps,
        },
        0.0,
        constant.clone(),
    )
    .unwrap();
    step_with(&mut o, &mut p, &g1);
    step_with(&mut o, &mut p, &g2);
    let (mut want, mut m, mut v) = ([1.0, 1.0], [0.0, 0.0], [0.0, 0.0]);
    for (t, g) in [g1, g2].iter().enumerate() {
        let t = t as i32 + 1;
        for i in 0..2 {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            want[i] -=
                LR * (m[i] / (1.0 - b1.powi(t))) / ((v[i] / (1.0 - b2.powi(t))).sqrt() + eps);
        }
    }
    assert_close(&p.value.to_vec(), &want);
}

#[test]
fn l2_penalty_applies_to_weights_only() {
    let lambda = 0.5;
    let mut w = param(&[2.0], true);
    let mut b = param(&[2.0], false);
    let mut o = Optimizer::new(Method::Sgd, lambda, Schedule::Constant { lr: LR }).unwrap();
    let g = Tensor::from_slice(&[1.0], &[1]).unwrap();
    o.step(
        [("w".to_string(), &mut w), ("b".to_string(), &mut b)],
        |_| Some(g.clone()),
        0,
    )
    .unwrap();
    // θ ← θ − η(∇ + λθ) for weights; θ ← θ − η∇ for biases.
    assert_close(&w.value.to_vec(), &[2.0 - LR * (1.0 + lambda * 2.0)]);
    assert_close(&b.value.to_vec(), &[2.0 - LR]);
    // AdamW decouples: θ shrinks by ηλθ, the gradient term is plain Adam's.
    let mut w = param(&[2.0], true);
    let mut o = Optimizer::new(
        Method::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
        lambda,
        Schedule::Constant { lr: LR },
    )
    .unwrap();
    o.step([("w".to_string(), &mut w)], |_| Some(g.clone()), 0)
        .unwrap();
    assert_close(
        &w.value.to_vec(),
        &[2.0 * (1.0 - LR * lambda) - LR * 1.0 / (1.0 + 1e-8)],
    );
}

fn assert_close(got: &[f64], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "got {got:?}, want {want:?}");
    }
}

/// Steps to bring f(x, y) = ½(εx² + y²) below `target` from (1, 1).
fn valley_steps(method: Method, lr: f64) -> usize {
    let eps = 0.01;
    let mut p = param(&[1.0, 1.0], false);
    let mut o = Optimizer::new(method, 0.0, Schedule::Constant { lr }).unwrap();
    for step in 0..20_000 {
        let v = p.value.to_vec();
        let f = 0.5 * (eps * v[0] * v[0] + v[1] * v[1]);
        if f < 1e-8 {
            return step;
        }
        let g = Tensor::from_slice(&[eps * v[0], v[1]], &[2]).unwrap();
        o.step([("p".to_string(), &mut p)], |_| Some(g.clone()), 0)
            .unwrap();
    }
    20_000
}

#[test]
fn momentum_and_rmsprop_cross_the_valley_faster() {
    // Plain descent with the largest safe-ish rate for the steep y direction.
    let sgd = valley_steps(Method::Sgd, 0.9);
    let momentum = valley_steps(Method::Momentum { mu: 0.9 }, 0.9);
    let rmsprop = valley_steps(
        Method::RmsProp {
            decay: 0.9,
            alpha: 1e-6,
        },
        0.01,
    );
    let adagrad = valley_steps(Method::Adagrad { alpha: 1e-6 }, 0.5);
    eprintln!("valley steps: sgd {sgd}, momentum {momentum}, rmsprop {rmsprop}, adagrad {adagrad}");
    assert!(
        sgd > 500,
        "plain SGD should crawl along the valley, took {sgd}"
    );
    assert!(momentum * 3 < sgd, "momentum {momentum} vs SGD {sgd}");
    assert!(rmsprop * 2 < sgd, "RMSprop {rmsprop} vs SGD {sgd}");
    assert!(adagrad * 2 < sgd, "Adagrad {adagrad} vs SGD {sgd}");
}

#[test]
fn schedules() {
    let inv = Schedule::InverseEpoch { a: 10.0, b: 2.0 };
    assert_eq!(inv.lr(0, 0), 0.1);
    assert_eq!(inv.lr(999, 5), 1.0 / 20.0);
    let step = Schedule::Step {
        lr: 1.0,
        gamma: 0.1,
        every: 2,
    };
    assert!((step.lr(0, 3) - 0.1).abs() < 1e-15);
    let cos = Schedule::Cosine {
        lr: 1.0,
        min_lr: 0.0,
        total_steps: 100,
    };
    assert_eq!(cos.lr(0, 0), 1.0);
    assert!((cos.lr(50, 0) - 0.5).abs() < 1e-12);
    assert!(cos.lr(100, 0).abs() < 1e-12);
    let warm = Schedule::Warmup {
        steps: 4,
        after: Box::new(Schedule::Constant { lr: 0.2 }),
    };
    assert!((warm.lr(0, 0) - 0.05).abs() < 1e-15);
    assert_eq!(warm.lr(10, 0), 0.2);
    assert!(Schedule::InverseEpoch { a: 0.0, b: 1.0 }
        .validate()
        .is_err());
    assert!(Schedule::Step {
        lr: 1.0,
        gamma: 0.5,
        every: 0
    }
    .validate()
    .is_err());
    assert!(matches!(
        Optimizer::<f64>::new(
            Method::Momentum { mu: 1.5 },
            0.0,
            Schedule::Constant { lr: 0.1 }
        ),
        Err(OptimError::Config(_))
    ));
    assert!(Optimizer::<f64>::new(Method::Sgd, -1.0, Schedule::Constant { lr: 0.1 }).is_err());
}

#[test]
fn state_save_and_restore_continues_identically() {
    let method = Method::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let grads = [[0.3, -0.1], [0.2, 0.4], [-0.5, 0.1], [0.05, 0.05]];
    // Uninterrupted.
    let mut p = param(&[1.0, 1.0], true);
    let mut o = Optimizer::new(method.clone(), 1e-3, Schedule::Constant { lr: LR }).unwrap();
    for g in &grads {
        step_with(&mut o, &mut p, g);
    }
    // Interrupted after two steps, restored into a fresh optimiser.
    let mut q = param(&[1.0, 1.0], true);
    let mut o1 = Optimizer::new(method.clone(), 1e-3, Schedule::Constant { lr: LR }).unwrap();
    for g in &grads[..2] {
        step_with(&mut o1, &mut q, g);
    }
    let saved = o1.state_tensors();
    let mut o2 = Optimizer::new(method, 1e-3, Schedule::Constant { lr: LR }).unwrap();
    o2.load_state_tensors(o1.steps(), &saved, [("p".to_string(), &q)])
        .unwrap();
    assert_eq!(o2.steps(), 2);
    for g in &grads[2..] {
        step_with(&mut o2, &mut q, g);
    }
    assert_eq!(
        p.value.to_vec(),
        q.value.to_vec(),
        "bit-identical continuation"
    );
    // A state for a differently sized parameter is refused.
    let other = param(&[1.0, 2.0, 3.0], true);
    let e = o2
        .load_state_tensors(2, &saved, [("p".to_string(), &other)])
        .unwrap_err();
    assert!(e.to_string().contains("parameter p"), "{e}");
}

#[test]
fn mismatched_gradient_is_an_error() {
    let mut p = param(&[1.0, 1.0], true);
    let mut o = Optimizer::new(Method::Sgd, 0.0, Schedule::Constant { lr: LR }).unwrap();
    let g = Tensor::from_slice(&[1.0], &[1]).unwrap();
    let e = o
        .step(
            [("layers.0.weight".to_string(), &mut p)],
            |_| Some(g.clone()),
            0,
        )
        .unwrap_err();
    assert!(e.to_string().contains("layers.0.weight"));
}
