//! Properties of the update rules and schedules over random settings: every
//! rule follows its formula step after step (against a plain f64 rendering of
//! 12.2.4's momentum, Adagrad, RMSprop and Adam), a restored state continues
//! bit for bit from any step, schedules keep their shapes, and bad settings
//! are errors.

use proptest::prelude::*;
use strata_autograd::Param;
use strata_optim::{Method, Optimizer, Schedule};
use strata_tensor::Tensor;

/// One of the eight rules, from an index and four numbers in `[0, 1)`.
fn method(kind: usize, a: f64, b: f64) -> Method {
    match kind {
        0 => Method::Sgd,
        1 => Method::Momentum { mu: a * 0.99 },
        2 => Method::Adagrad { alpha: 1e-6 + b },
        3 => Method::RmsProp {
            decay: a * 0.999,
            alpha: 1e-6 + b,
        },
        4 => Method::Adam {
            beta1: a * 0.99,
            beta2: 0.9 + b * 0.0999,
            eps: 1e-8,
        },
        5 => Method::AdamW {
            beta1: a * 0.99,
            beta2: 0.9 + b * 0.0999,
            eps: 1e-8,
        },
        k => Method::MomentumTorch {
            mu: a * 0.99,
            nesterov: k == 7,
        },
    }
}

/// The rules written out one entry at a time: `theta` after `grads`, with
/// learning rate `lr`, L2 weight `wd` and the parameter's `decay` flag.
fn reference(
    m: &Method,
    theta0: &[f64],
    grads: &[Vec<f64>],
    lr: f64,
    wd: f64,
    decay: bool,
) -> Vec<f64> {
    let mut theta = theta0.to_vec();
    let (mut s1, mut s2) = (vec![0.0; theta.len()], vec![0.0; theta.len()]);
    for (t, g) in grads.iter().enumerate() {
        let step = (t + 1) as i32;
        for i in 0..theta.len() {
            let coupled = decay && !matches!(m, Method::AdamW { .. });
            // ∇[(λ/2) wᵀw] = λw joins the gradient (AdamW decays θ instead).
            let gi = g[i] + if coupled { wd * theta[i] } else { 0.0 };
            match *m {
                Method::Sgd => theta[i] -= lr * gi,
                Method::Momentum { mu } => {
                    s1[i] = mu * s1[i] + lr * gi;
                    theta[i] -= s1[i];
                }
                Method::MomentumTorch { mu, nesterov } => {
                    s1[i] = mu * s1[i] + gi;
                    theta[i] -= lr * if nesterov { gi + mu * s1[i] } else { s1[i] };
                }
                Method::Adagrad { alpha } => {
                    s1[i] += gi * gi;
                    theta[i] -= lr * gi / (s1[i].sqrt() + alpha);
                }
                Method::RmsProp { decay: d, alpha } => {
                    s1[i] = d * s1[i] + (1.0 - d) * gi * gi;
                    theta[i] -= lr * gi / (s1[i].sqrt() + alpha);
                }
                Method::Adam { beta1, beta2, eps } | Method::AdamW { beta1, beta2, eps } => {
                    if decay && matches!(m, Method::AdamW { .. }) {
                        theta[i] -= lr * wd * theta[i];
                    }
                    s1[i] = beta1 * s1[i] + (1.0 - beta1) * gi;
                    s2[i] = beta2 * s2[i] + (1.0 - beta2) * gi * gi;
                    let mh = s1[i] / (1.0 - beta1.powi(step));
                    let vh = s2[i] / (1.0 - beta2.powi(step));
                    theta[i] -= lr * mh / (vh.sqrt() + eps);
                }
            }
        }
    }
    theta
}

fn run(opt: &mut Optimizer<f64>, p: &mut Param<f64>, grads: &[Vec<f64>]) {
    for g in grads {
        let g = Tensor::from_slice(g, &[g.len()]).unwrap();
        opt.step([("w".to_string(), &mut *p)], |_| Some(g.clone()), 0)
            .unwrap();
    }
}

fn setting() -> impl Strategy<Value = (usize, f64, f64, f64, bool, Vec<f64>, Vec<Vec<f64>>)> {
    (1usize..12, 1usize..8).prop_flat_map(|(n, steps)| {
        (
            0usize..8,
            0.0f64..1.0,
            0.0f64..1.0,
            prop_oneof![Just(0.0), 1e-4f64..0.1],
            any::<bool>(),
            prop::collection::vec(-2.0f64..2.0, n),
            prop::collection::vec(prop::collection::vec(-3.0f64..3.0, n), steps),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_rule_follows_its_formula(
        (kind, a, b, wd, decay, theta, grads) in setting(),
        lr in 1e-3f64..0.5,
    ) {
        let m = method(kind, a, b);
        let mut opt = Optimizer::new(m.clone(), wd, Schedule::Constant { lr }).unwrap();
        let mut p = Param::new(Tensor::from_slice(&theta, &[theta.len()]).unwrap(), decay);
        run(&mut opt, &mut p, &grads);
        let want = reference(&m, &theta, &grads, lr, wd, decay);
        prop_assert_eq!(opt.steps(), grads.len() as u64);
        for (got, want) in p.value.to_vec().iter().zip(&want) {
            prop_assert!((got - want).abs() <= 1e-12 * (1.0 + want.abs()), "{:?}: {} vs {}", m, got, want);
        }
    }

    #[test]
    fn restoring_at_any_step_continues_bit_for_bit(
        (kind, a, b, wd, decay, theta, grads) in setting(),
        cut in 0usize..8,
    ) {
        let cut = cut.min(grads.len());
        let m = method(kind, a, b);
        let schedule = Schedule::Warmup { steps: 3, after: Box::new(Schedule::Constant { lr: 0.1 }) };
        let fresh = || Optimizer::<f64>::new(m.clone(), wd, schedule.clone()).unwrap();
        let param = || Param::new(Tensor::from_slice(&theta, &[theta.len()]).unwrap(), decay);
        let (mut whole, mut p) = (fresh(), param());
        run(&mut whole, &mut p, &grads);
        let (mut first, mut q) = (fresh(), param());
        run(&mut first, &mut q, &grads[..cut]);
        let mut second = fresh();
        second.load_state_tensors(first.steps(), &first.state_tensors(), [("w".to_string(), &q)]).unwrap();
        prop_assert_eq!(second.steps(), cut as u64);
        run(&mut second, &mut q, &grads[cut..]);
        prop_assert_eq!(p.value.to_vec(), q.value.to_vec());
    }

    #[test]
    fn schedules_keep_their_shapes(
        lr in 1e-4f64..1.0, frac in 0.0f64..1.0, total in 1u64..500, warm in 1u64..50,
        gamma in 0.01f64..1.0, every in 1usize..10, a in 0.1f64..100.0, b in 0.0f64..10.0,
    ) {
        let min_lr = lr * frac;
        let cosine = Schedule::Cosine { lr, min_lr, total_steps: total };
        prop_assert!(cosine.validate().is_ok());
        prop_assert!((cosine.lr(0, 0) - lr).abs() <= 1e-12 * lr);
        let mut prev = f64::INFINITY;
        for s in 0..=total + 5 {
            let r = cosine.lr(s, 0);
            // Non-increasing from lr to min_lr, then held there.
            prop_assert!(r <= prev + 1e-15 && r >= min_lr - 1e-15, "step {}: {}", s, r);
            prev = r;
        }
        prop_assert!((cosine.lr(total, 0) - min_lr).abs() <= 1e-12 * lr);

        let warmup = Schedule::Warmup { steps: warm, after: Box::new(cosine.clone()) };
        prop_assert!(warmup.validate().is_ok());
        for s in 0..warm {
            // Linear from lr/warm up to lr, then the cosine from its own step 0.
            let want = lr * (s + 1) as f64 / warm as f64;
            prop_assert!((warmup.lr(s, 0) - want).abs() <= 1e-12 * lr);
        }
        for s in warm..warm + total + 3 {
            prop_assert_eq!(warmup.lr(s, 0), cosine.lr(s - warm, 0));
        }

        let step = Schedule::Step { lr, gamma, every };
        prop_assert!(step.validate().is_ok());
        for e in 0..4 * every {
            let r = step.lr(0, e);
            prop_assert!(r > 0.0 && r.is_finite());
            if (e + 1) % every != 0 {
                prop_assert_eq!(r, step.lr(0, e + 1), "constant within a period");
            } else {
                prop_assert!((step.lr(0, e + 1) - r * gamma).abs() <= 1e-12 * r);
            }
        }

        let inverse = Schedule::InverseEpoch { a, b };
        prop_assert!(inverse.validate().is_ok());
        for e in 0..20 {
            let r = inverse.lr(0, e);
            prop_assert!((r - 1.0 / (a + b * e as f64)).abs() <= 1e-15 * (1.0 + r));
            prop_assert!(r >= inverse.lr(0, e + 1));
        }
    }

    #[test]
    fn settings_outside_their_range_are_errors(
        kind in 0usize..6,
        v in prop_oneof![-2.0f64..2.0, Just(f64::NAN), Just(f64::INFINITY), Just(1.0), Just(0.0)],
        wd in prop_oneof![-1.0f64..1.0, Just(f64::NAN)],
        lr in prop_oneof![-1.0f64..1.0, Just(f64::NAN), Just(f64::INFINITY)],
    ) {
        let m = match kind {
            0 => Method::Sgd,
            1 => Method::Momentum { mu: v },
            2 => Method::Adagrad { alpha: 1e-6 },
            3 => Method::RmsProp { decay: v, alpha: 1e-6 },
            4 => Method::Adam { beta1: v, beta2: 0.999, eps: 1e-8 },
            _ => Method::AdamW { beta1: 0.9, beta2: v, eps: 1e-8 },
        };
        let unit_ok = kind == 0 || kind == 2 || (0.0..1.0).contains(&v);
        let ok = unit_ok && wd >= 0.0 && lr > 0.0 && lr.is_finite();
        let got = Optimizer::<f64>::new(m, wd, Schedule::Constant { lr });
        prop_assert_eq!(got.is_ok(), ok, "{:?}", got.err());
    }
}
