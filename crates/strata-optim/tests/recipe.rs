//! The fast-training toolbox (issue 22): PyTorch-convention and Nesterov
//! momentum, parameter groups, look-ahead and the piecewise schedule, each
//! against a hand computation of its formula.

use proptest::prelude::*;
use strata_autograd::Param;
use strata_optim::{Lookahead, Method, Optimizer, ParamGroup, Schedule};
use strata_tensor::Tensor;

fn param(v: &[f64], decay: bool) -> Param<f64> {
    Param::new(Tensor::from_slice(v, &[v.len()]).unwrap(), decay)
}

fn grad(g: &[f64]) -> Tensor<f64> {
    Tensor::from_slice(g, &[g.len()]).unwrap()
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "got {got:?}, want {want:?}");
    }
}

/// `b ← μb + g + λθ; θ ← θ − η(nesterov ? g' + μb : b)`, by hand.
fn torch_by_hand(
    theta: &[f64],
    grads: &[&[f64]],
    lrs: &[f64],
    mu: f64,
    wd: f64,
    nesterov: bool,
) -> Vec<f64> {
    let mut t = theta.to_vec();
    let mut b = vec![0.0; t.len()];
    for (g, lr) in grads.iter().zip(lrs) {
        for i in 0..t.len() {
            let gi = g[i] + wd * t[i];
            b[i] = mu * b[i] + gi;
            let d = if nesterov { gi + mu * b[i] } else { b[i] };
            t[i] -= lr * d;
        }
    }
    t
}

#[test]
fn torch_momentum_and_nesterov_follow_their_formulas_under_a_changing_rate() {
    let grads: [&[f64]; 3] = [&[0.5, -1.0], &[0.25, 2.0], &[-1.0, 0.125]];
    // A warm-up: the rate changes every step, where the conventions differ.
    let schedule = Schedule::Warmup {
        steps: 3,
        after: Box::new(Schedule::Constant { lr: 0.3 }),
    };
    let lrs = [0.1, 0.2, 0.3];
    for nesterov in [false, true] {
        let mut p = param(&[1.0, -2.0], true);
        let mut o = Optimizer::new(
            Method::MomentumTorch { mu: 0.85, nesterov },
            0.01,
            schedule.clone(),
        )
        .unwrap();
        for g in grads {
            let g = grad(g);
            o.step([("w".to_string(), &mut p)], |_| Some(g.clone()), 0)
                .unwrap();
        }
        let want = torch_by_hand(&[1.0, -2.0], &grads, &lrs, 0.85, 0.01, nesterov);
        assert_close(&p.value.to_vec(), &want);
    }
    // Under a changing rate the chapter's convention gives another point.
    let mut p = param(&[1.0, -2.0], true);
    let mut o = Optimizer::new(Method::Momentum { mu: 0.85 }, 0.01, schedule).unwrap();
    for g in grads {
        let g = grad(g);
        o.step([("w".to_string(), &mut p)], |_| Some(g.clone()), 0)
            .unwrap();
    }
    let torch = torch_by_hand(&[1.0, -2.0], &grads, &lrs, 0.85, 0.01, false);
    assert!((p.value.to_vec()[0] - torch[0]).abs() > 1e-6);
}

#[test]
fn groups_scale_rate_and_decay_freeze_after_their_epochs_and_skip_frozen_parameters() {
    let lr = 0.1;
    let groups = vec![
        ParamGroup {
            lr_scale: 4.0,
            decay_scale: 0.25,
            decay: Some(true),
            ..ParamGroup::new("*.beta")
        },
        ParamGroup {
            epochs: Some(2),
            ..ParamGroup::new("layers.0.bias")
        },
    ];
    let mut o = Optimizer::new(Method::Sgd, 0.5, Schedule::Constant { lr })
        .unwrap()
        .with_groups(groups)
        .unwrap();
    // beta: not decayed by itself, the group turns the penalty on at λ/4.
    let mut beta = param(&[1.0], false);
    let mut bias = param(&[1.0], false);
    let mut w = param(&[1.0], true);
    let mut frozen = param(&[1.0], true);
    frozen.frozen = true;
    for epoch in 0..3 {
        let g = grad(&[1.0]);
        o.step(
            [
                ("layers.4.beta".to_string(), &mut beta),
                ("layers.0.bias".to_string(), &mut bias),
                ("layers.2.weight".to_string(), &mut w),
                ("layers.0.weight".to_string(), &mut frozen),
            ],
            |_| Some(g.clone()),
            epoch,
        )
        .unwrap();
    }
    let mut want_beta = 1.0;
    let mut want_w = 1.0;
    for _ in 0..3 {
        want_beta -= 4.0 * lr * (1.0 + 0.125 * want_beta);
        want_w -= lr * (1.0 + 0.5 * want_w);
    }
    assert_close(&beta.value.to_vec(), &[want_beta]);
    assert_close(&w.value.to_vec(), &[want_w]);
    // Two epochs of plain steps, then frozen.
    assert_close(&bias.value.to_vec(), &[1.0 - 2.0 * lr]);
    assert_eq!(frozen.value.to_vec(), vec![1.0]);
    assert!(ParamGroup::new("*.beta").matches("layers.3.beta"));
    assert!(!ParamGroup::new("*.beta").matches("layers.3.beta2"));
    assert!(ParamGroup::new("layers.*.weight").matches("layers.12.weight"));
    let bad = Optimizer::<f64>::new(Method::Sgd, 0.0, Schedule::Constant { lr })
        .unwrap()
        .with_groups(vec![ParamGroup {
            lr_scale: -1.0,
            ..ParamGroup::new("*")
        }]);
    assert!(bad.is_err());
}

#[test]
fn lookahead_moves_the_slow_copy_restarts_the_weights_and_ends_on_it() {
    let la = Lookahead {
        every: 2,
        decay: 0.5,
        power: 1.0,
        total_steps: 4,
    };
    let mut o = Optimizer::new(Method::Sgd, 0.0, Schedule::Constant { lr: 1.0 })
        .unwrap()
        .with_lookahead(la.clone())
        .unwrap();
    // θ and a buffer climb by 1 a step; synchronisations at steps 2 and 4.
    let mut p = param(&[0.0], true);
    let mut buf = Tensor::from_slice(&[10.0f64], &[1]).unwrap();
    let mut seen = Vec::new();
    for step in 1..=5u64 {
        let g = grad(&[-1.0]);
        o.step([("w".to_string(), &mut p)], |_| Some(g.clone()), 0)
            .unwrap();
        buf.data_mut()[0] += 1.0;
        let finish = step == 5;
        let synced = o
            .lookahead_sync(
                [
                    ("w".to_string(), &mut p.value),
                    ("buf".to_string(), &mut buf),
                ],
                finish,
            )
            .unwrap();
        assert_eq!(synced, step % 2 == 0 || finish);
        seen.push((p.value.to_vec()[0], buf.to_vec()[0]));
    }
    // Step 2: the slow copies start as (2, 12), w = 1 − 0.5·(2/4) = 0.75: unchanged.
    assert_eq!(seen[1], (2.0, 12.0));
    // Step 4: w = 1 − 0.5 = 0.5: e = 2 + 0.5·(4 − 2) = 3, 12 + 0.5·(14 − 12) = 13.
    assert_eq!(seen[3], (3.0, 13.0));
    // Step 5 with finish: back to the slow copies, which stay put.
    assert_eq!(seen[4], (3.0, 13.0));
    // The slow copies travel with the state, and a resumed optimiser goes on alike.
    let saved = o.state_tensors();
    assert!(saved.iter().any(|(n, _)| n == "lookahead/w"));
    let mut o2 = Optimizer::new(Method::Sgd, 0.0, Schedule::Constant { lr: 1.0 })
        .unwrap()
        .with_lookahead(la)
        .unwrap();
    let q = param(&[0.0], true);
    o2.load_state_tensors(o.steps(), &saved, [("w".to_string(), &q)])
        .unwrap();
    assert_eq!(o2.state_tensors().len(), saved.len());
    // Without look-ahead, saved copies are refused.
    let mut plain = Optimizer::new(Method::Sgd, 0.0, Schedule::Constant { lr: 1.0 }).unwrap();
    assert!(plain
        .load_state_tensors(o.steps(), &saved, [("w".to_string(), &q)])
        .is_err());
    // Bad settings are errors.
    let bad = Lookahead {
        every: 0,
        decay: 0.5,
        power: 1.0,
        total_steps: 4,
    };
    assert!(
        Optimizer::<f64>::new(Method::Sgd, 0.0, Schedule::Constant { lr: 1.0 })
            .unwrap()
            .with_lookahead(bad)
            .is_err()
    );
}

#[test]
fn piecewise_schedule_is_airbench_triangle() {
    let s = Schedule::Piecewise {
        lr: 2.0,
        points: vec![(0.0, 0.2), (0.25, 1.0), (1.0, 0.1)],
        total_steps: 100,
    };
    assert!(s.validate().is_ok());
    assert!((s.lr(0, 0) - 0.4).abs() < 1e-12);
    assert!((s.lr(25, 0) - 2.0).abs() < 1e-12);
    assert!((s.lr(100, 0) - 0.2).abs() < 1e-12);
    // Half-way up the ramp and down the slope.
    assert!((s.lr(12, 0) - 2.0 * (0.2 + 0.8 * 0.48)).abs() < 1e-12);
    assert!((s.lr(200, 0) - 0.2).abs() < 1e-12);
    for bad in [
        vec![],
        vec![(0.5, 1.0), (0.25, 1.0)],
        vec![(0.0, -1.0)],
        vec![(1.5, 1.0)],
    ] {
        let s = Schedule::Piecewise {
            lr: 1.0,
            points: bad,
            total_steps: 10,
        };
        assert!(s.validate().is_err());
    }
}

proptest! {
    /// Between two points the rate lies between their rates, at each point
    /// it is theirs, and it never goes negative.
    #[test]
    fn piecewise_interpolates(
        mut xs in proptest::collection::vec(0.0f64..1.0, 1..5),
        fs in proptest::collection::vec(0.0f64..3.0, 5),
        total in 1u64..500,
        step in 0u64..600,
    ) {
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let points: Vec<(f64, f64)> = xs.iter().zip(&fs).map(|(&x, &f)| (x, f)).collect();
        let s = Schedule::Piecewise { lr: 1.0, points: points.clone(), total_steps: total };
        prop_assert!(s.validate().is_ok());
        let lr = s.lr(step, 0);
        let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = points.iter().map(|p| p.1).fold(0.0, f64::max);
        prop_assert!(lr >= lo - 1e-12 && lr <= hi + 1e-12);
        let t = step as f64 / total as f64;
        if let Some(&(_, f)) = points.iter().find(|p| (p.0 - t).abs() < 1e-15) {
            prop_assert!((lr - f).abs() < 1e-9);
        }
    }

    /// Nesterov's step is plain torch momentum's plus `ημb` — for any
    /// gradients, both as their formulas say.
    #[test]
    fn torch_rules_match_their_formulas(
        g in proptest::collection::vec(-2.0f64..2.0, 6),
        mu in 0.0f64..0.99,
        wd in 0.0f64..0.1,
        nesterov: bool,
    ) {
        let mut p = param(&[0.5, -0.5], true);
        let mut o = Optimizer::new(Method::MomentumTorch { mu, nesterov }, wd, Schedule::Constant { lr: 0.05 }).unwrap();
        let grads: Vec<&[f64]> = g.chunks(2).collect();
        for gs in &grads {
            let gt = grad(gs);
            o.step([("w".to_string(), &mut p)], |_| Some(gt.clone()), 0).unwrap();
        }
        let want = torch_by_hand(&[0.5, -0.5], &grads, &[0.05; 3], mu, wd, nesterov);
        for (a, b) in p.value.to_vec().iter().zip(&want) {
            prop_assert!((a - b).abs() < 1e-12);
        }
    }
}
