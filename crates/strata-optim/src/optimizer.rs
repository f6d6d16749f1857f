//! One optimiser type, many update rules (section 12.2.4), sharing the state
//! handling, the L2 penalty and the schedule.

use crate::schedule::Schedule;
use std::collections::BTreeMap;
use strata_autograd::kernels::{elementwise, optim as k};
use strata_autograd::{Param, Real};
use strata_tensor::Tensor;
use thiserror::Error;

/// Optimiser errors: mismatched gradient or state shapes, bad settings.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum OptimError {
    /// A gradient or saved state does not fit its parameter.
    #[error("parameter {name}: {what}")]
    Shape {
        /// Parameter name.
        name: String,
        /// What did not fit.
        what: String,
    },
    /// An impossible setting.
    #[error("optimizer: {0}")]
    Config(String),
}

/// The update rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    /// Plain minibatch gradient descent, `θ ← θ − η∇`.
    Sgd,
    /// Momentum exactly as 12.2.4: `v ← μv + η∇; θ ← θ − v`.
    Momentum {
        /// `μ`, typically 0.9.
        mu: f64,
    },
    /// Adagrad: `c ← c + g²; θ ← θ − η g/(√c + α)`.
    Adagrad {
        /// `α`, typically 1e-6.
        alpha: f64,
    },
    /// RMSprop: `c ← Δc + (1 − Δ)g²; θ ← θ − η g/(√c + α)`.
    RmsProp {
        /// The decay rate `Δ` (0.9, 0.99, 0.999).
        decay: f64,
        /// `α`, typically 1e-6.
        alpha: f64,
    },
    /// Adam with bias correction; the L2 penalty is added to the gradient.
    Adam {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator offset.
        eps: f64,
    },
    /// AdamW: Adam with decoupled weight decay (`θ ← θ − η·λ·θ`) instead of an L2 gradient term.
    AdamW {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator offset.
        eps: f64,
    },
}

impl Method {
    /// Names of the per-parameter state buffers this rule keeps.
    fn slots(&self) -> &'static [&'static str] {
        match self {
            Method::Sgd => &[],
            Method::Momentum { .. } => &["velocity"],
            Method::Adagrad { .. } | Method::RmsProp { .. } => &["cache"],
            Method::Adam { .. } | Method::AdamW { .. } => &["m", "v"],
        }
    }
}

/// An optimiser: an update rule, the chapter's L2 penalty `(λ/2)Σ wᵀw` on
/// weights (parameters with `decay = true`; biases are not penalised), and a
/// learning-rate schedule.
#[derive(Clone, Debug)]
pub struct Optimizer<T> {
    /// The update rule.
    pub method: Method,
    /// `λ`, the weight of the L2 penalty (its gradient `λw` is added to `∇`).
    pub weight_decay: f64,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    step: u64,
    state: BTreeMap<String, Vec<Vec<T>>>,
}

impl<T: Real> Optimizer<T> {
    /// A new optimiser with empty state.
    pub fn new(method: Method, weight_decay: f64, schedule: Schedule) -> Result<Self, OptimError> {
        schedule.validate().map_err(OptimError::Config)?;
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return Err(OptimError::Config(format!(
                "weight_decay must be ≥ 0, got {weight_decay}"
            )));
        }
        let unit = |n: &str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(OptimError::Config(format!(
                    "{n} must lie in [0, 1), got {v}"
                )))
            }
        };
        match &method {
            Method::Momentum { mu } => unit("momentum", *mu)?,
            Method::RmsProp { decay, .. } => unit("decay", *decay)?,
            Method::Adam { beta1, beta2, .. } | Method::AdamW { beta1, beta2, .. } => {
                unit("beta1", *beta1)?;
                unit("beta2", *beta2)?;
            }
            _ => {}
        }
        Ok(Self {
            method,
            weight_decay,
            schedule,
            step: 0,
            state: BTreeMap::new(),
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The learning rate the next step will use in epoch `epoch`.
    pub fn lr(&self, epoch: usize) -> f64 {
        self.schedule.lr(self.step, epoch)
    }

    /// One update of every named parameter from its gradient (`None`: the
    /// parameter got no gradient this step and is left alone). Returns the
    /// learning rate used.
    pub fn step<'a>(
        &mut self,
        params: impl IntoIterator<Item = (String, &'a mut Param<T>)>,
        grad_of: impl Fn(&Param<T>) -> Option<Tensor<T>>,
        epoch: usize,
    ) -> Result<f64, OptimError> {
        let lr = self.lr(epoch);
        self.step += 1;
        for (name, p) in params {
            let Some(g) = grad_of(p) else { continue };
            self.update(&name, p, &g, lr)?;
        }
        Ok(lr)
    }

    fn update(
        &mut self,
        name: &str,
        p: &mut Param<T>,
        grad: &Tensor<T>,
        lr: f64,
    ) -> Result<(), OptimError> {
        if grad.shape() != p.value.shape() {
            return Err(OptimError::Shape {
                name: name.into(),
                what: format!(
                    "gradient shape {:?} differs from parameter shape {:?}",
                    grad.shape(),
                    p.value.shape()
                ),
            });
        }
        let n = p.value.numel();
        let decoupled = matches!(self.method, Method::AdamW { .. });
        let penalised = p.decay && self.weight_decay > 0.0 && !decoupled;
        if let Method::Momentum { mu } = self.method {
            // The hot path: penalty and update fused, no copy of the gradient.
            let v = &mut slot(&mut self.state, name, n, 1)?[0];
            let (theta, g) = (p.value.data_mut(), grad.to_contiguous_slice());
            let (lr, mu) = (T::of(lr), T::of(mu));
            if penalised {
                k::sgd_momentum_l2(theta, &g, v, lr, mu, T::of(self.weight_decay));
            } else {
                k::sgd_momentum(theta, &g, v, lr, mu);
            }
            return Ok(());
        }
        let mut g = grad.to_vec();
        if penalised {
            // ∇[(λ/2) wᵀw] = λw
            elementwise::axpy(
                T::of(self.weight_decay),
                &p.value.to_contiguous_slice(),
                &mut g,
            );
        }
        let state = slot(&mut self.state, name, n, self.method.slots().len())?;
        let theta = p.value.data_mut();
        let lr_t = T::of(lr);
        match &self.method {
            Method::Sgd => k::sgd(theta, &g, lr_t),
            Method::Momentum { mu } => k::sgd_momentum(theta, &g, &mut state[0], lr_t, T::of(*mu)),
            Method::Adagrad { alpha } => k::adagrad(theta, &g, &mut state[0], lr_t, T::of(*alpha)),
            Method::RmsProp { decay, alpha } => {
                k::rmsprop(theta, &g, &mut state[0], lr_t, T::of(*decay), T::of(*alpha))
            }
            Method::Adam { beta1, beta2, eps } | Method::AdamW { beta1, beta2, eps } => {
                let wd = if decoupled && p.decay {
                    self.weight_decay
                } else {
                    0.0
                };
                let (m, v) = state.split_at_mut(1);
                k::adam(
                    theta,
                    &g,
                    &mut m[0],
                    &mut v[0],
                    lr_t,
                    T::of(*beta1),
                    T::of(*beta2),
                    T::of(*eps),
                    self.step,
                    T::of(wd),
                );
            }
        }
        Ok(())
    }

    /// The optimiser's state as named tensors (`<param>.<slot>`, plus
    /// `__step`), ready to be written next to a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor<T>)> {
        let mut out = vec![(
            "__step".to_string(),
            Tensor::from_vec(vec![T::of(self.step as f64)], &[1]).expect("one element"),
        )];
        for (name, bufs) in &self.state {
            for (slot, b) in self.method.slots().iter().zip(bufs) {
                out.push((
                    format!("{name}.{slot}"),
                    Tensor::from_slice(b, &[b.len()]).expect("flat"),
                ));
            }
        }
        out
    }

    /// Restores state written by [`Optimizer::state_tensors`] for the same
    /// update rule. Checks every buffer against the parameter it belongs to.
    pub fn load_state_tensors<'a>(
        &mut self,
        tensors: &[(String, Tensor<T>)],
        params: impl IntoIterator<Item = (String, &'a Param<T>)>,
    ) -> Result<(), OptimError> {
        let step = tensors
            .iter()
            .find(|(n, _)| n == "__step")
            .and_then(|(_, t)| t.to_vec().first().map(|v| v.as_f64()))
            .ok_or_else(|| OptimError::Config("saved state has no __step entry".into()))?;
        let mut state = BTreeMap::new();
        for (name, p) in params {
            let mut bufs = Vec::new();
            for slot in self.method.slots() {
                let key = format!("{name}.{slot}");
                match tensors.iter().find(|(n, _)| *n == key) {
                    None if bufs.is_empty()
                        && !tensors
                            .iter()
                            .any(|(n, _)| n.starts_with(&format!("{name}."))) =>
                    {
                        break
                    }
                    None => {
                        return Err(OptimError::Shape {
                            name,
                            what: format!("saved state lacks {key}"),
                        })
                    }
                    Some((_, t)) if t.numel() != p.value.numel() => {
                        return Err(OptimError::Shape {
                            name,
                            what: format!(
                                "saved {slot} has {} values, the parameter {}",
                                t.numel(),
                                p.value.numel()
                            ),
                        })
                    }
                    Some((_, t)) => bufs.push(t.to_vec()),
                }
            }
            if !bufs.is_empty() {
                state.insert(name, bufs);
            }
        }
        self.step = step as u64;
        self.state = state;
        Ok(())
    }
}

/// The state buffers of parameter `name` (`slots` of `n` values each),
/// created as zeros on first use.
fn slot<'s, T: Real>(
    state: &'s mut BTreeMap<String, Vec<Vec<T>>>,
    name: &str,
    n: usize,
    slots: usize,
) -> Result<&'s mut Vec<Vec<T>>, OptimError> {
    if !state.contains_key(name) {
        state.insert(name.to_string(), vec![vec![T::zero(); n]; slots]);
    }
    let state = state.get_mut(name).expect("inserted above");
    if state.iter().any(|s| s.len() != n) {
        return Err(OptimError::Shape {
            name: name.into(),
            what: "optimizer state has another size than the parameter".into(),
        });
    }
    Ok(state)
}
