//! Learning-rate schedules `η_n`.

/// How the learning rate changes with step `n` and epoch `e(n)`.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// A fixed `η`.
    Constant {
        /// The learning rate.
        lr: f64,
    },
    /// The chapter's `η_n = 1/(a + b·e(n))` (12.1.3).
    InverseEpoch {
        /// Offset `a` (`1/a` is the first epoch's rate).
        a: f64,
        /// Slope `b` per epoch.
        b: f64,
    },
    /// `η = lr · γ^{⌊e/every⌋}`: multiply by `gamma` every `every` epochs.
    Step {
        /// Initial rate.
        lr: f64,
        /// Factor applied at each decay.
        gamma: f64,
        /// Epochs between decays.
        every: usize,
    },
    /// Cosine annealing from `lr` to `min_lr` over `total_steps` steps.
    Cosine {
        /// Initial rate.
        lr: f64,
        /// Final rate.
        min_lr: f64,
        /// Length of the schedule in steps.
        total_steps: u64,
    },
    /// Piecewise linear in the fraction `t = n/N` of the run: `η = lr·f(t)`,
    /// `f` joining `points` (fraction, factor) by straight lines and constant
    /// beyond them. airbench's triangle is `[(0, 0.2), (0.23, 1), (1, 0.07)]`.
    Piecewise {
        /// The rate a factor of 1 stands for.
        lr: f64,
        /// `(t, f)` pairs with increasing `t` in `[0, 1]`.
        points: Vec<(f64, f64)>,
        /// Steps in the run `N`.
        total_steps: u64,
    },
    /// Linear warm-up from 0 over `steps` steps, then `after`.
    Warmup {
        /// Warm-up length in steps.
        steps: u64,
        /// The schedule that follows (its step count starts at 0 after warm-up).
        after: Box<Schedule>,
    },
}

impl Schedule {
    /// The learning rate at global step `step` (0-based) in epoch `epoch` (0-based).
    pub fn lr(&self, step: u64, epoch: usize) -> f64 {
        match self {
            Schedule::Constant { lr } => *lr,
            Schedule::InverseEpoch { a, b } => 1.0 / (a + b * epoch as f64),
            Schedule::Step { lr, gamma, every } => {
                lr * gamma.powi((epoch / (*every).max(1)) as i32)
            }
            Schedule::Cosine {
                lr,
                min_lr,
                total_steps,
            } => {
                let t = (step as f64 / (*total_steps).max(1) as f64).min(1.0);
                min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Piecewise {
                lr,
                points,
                total_steps,
            } => {
                let t = step as f64 / (*total_steps).max(1) as f64;
                let f = match points.iter().position(|&(x, _)| x > t) {
                    None => points.last().map_or(1.0, |p| p.1),
                    Some(0) => points[0].1,
                    Some(i) => {
                        let ((x0, f0), (x1, f1)) = (points[i - 1], points[i]);
                        f0 + (f1 - f0) * (t - x0) / (x1 - x0)
                    }
                };
                lr * f
            }
            Schedule::Warmup { steps, after } => {
                if step < *steps {
                    after.lr(0, epoch) * (step + 1) as f64 / *steps as f64
                } else {
                    after.lr(step - steps, epoch)
                }
            }
        }
    }

    /// Checks the parameters make sense (positive rates, `a + b·e > 0`, …).
    pub fn validate(&self) -> Result<(), String> {
        let pos = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be a positive number, got {v}"))
            }
        };
        match self {
            Schedule::Constant { lr } => pos("lr", *lr),
            Schedule::InverseEpoch { a, b } => {
                pos("a", *a)?;
                if b.is_finite() && *b >= 0.0 {
                    Ok(())
                } else {
                    Err(format!("b must be ≥ 0, got {b}"))
                }
            }
            Schedule::Step { lr, gamma, every } => {
                pos("lr", *lr)?;
                pos("gamma", *gamma)?;
                if *every == 0 {
                    return Err("every must be at least 1 epoch".into());
                }
                Ok(())
            }
            Schedule::Cosine { lr, min_lr, .. } => {
                pos("lr", *lr)?;
                if *min_lr < 0.0 || min_lr > lr {
                    return Err(format!("min_lr must lie in [0, lr], got {min_lr}"));
                }
                Ok(())
            }
            Schedule::Piecewise { lr, points, .. } => {
                pos("lr", *lr)?;
                if points.is_empty() {
                    return Err("points needs at least one [fraction, factor] pair".into());
                }
                for (i, &(t, f)) in points.iter().enumerate() {
                    if !(0.0..=1.0).contains(&t) {
                        return Err(format!("points[{i}]: the fraction {t} must lie in [0, 1]"));
                    }
                    if !(f.is_finite() && f >= 0.0) {
                        return Err(format!("points[{i}]: the factor {f} must be ≥ 0"));
                    }
                    if i > 0 && t <= points[i - 1].0 {
                        return Err(format!(
                            "points[{i}]: fractions must increase, {t} follows {}",
                            points[i - 1].0
                        ));
                    }
                }
                Ok(())
            }
            Schedule::Warmup { after, .. } => after.validate(),
        }
    }
}
