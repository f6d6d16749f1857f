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
    /// Momentum in PyTorch's convention: `b ← μb + ∇; θ ← θ − ηb`, or with
    /// Nesterov's look-ahead `θ ← θ − η(∇ + μb)`. Under a constant `η` it is
    /// the chapter's rule with `v = ηb`; under a changing `η` the buffer
    /// keeps gradients, so a new rate applies to the whole step at once.
    MomentumTorch {
        /// `μ`, typically 0.9.
        mu: f64,
        /// Nesterov's accelerated gradient.
        nesterov: bool,
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
            Method::Momentum { .. } | Method::MomentumTorch { .. } => &["velocity"],
            Method::Adagrad { .. } | Method::RmsProp { .. } => &["cache"],
            Method::Adam { .. } | Method::AdamW { .. } => &["m", "v"],
        }
    }
}

/// Settings for a set of parameters chosen by name: a multiplier on the
/// learning rate and on the weight decay, and how many epochs they train.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroup {
    /// Which parameters: their dotted name, where `*` matches any run of
    /// characters (`*.beta`: every batch-norm shift; `layers.0.*`).
    pub pattern: String,
    /// Factor on the schedule's learning rate.
    pub lr_scale: f64,
    /// Factor on `λ` (for parameters the penalty applies to).
    pub decay_scale: f64,
    /// Train only in the first this many epochs, then freeze (`None`: always).
    pub epochs: Option<usize>,
    /// Whether the penalty applies, overriding [`Param::decay`] (`None`:
    /// the parameter's own flag; airbench decays batch-norm shifts too).
    pub decay: Option<bool>,
}

impl ParamGroup {
    /// A group with factors 1 that trains throughout.
    pub fn new(pattern: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
            lr_scale: 1.0,
            decay_scale: 1.0,
            epochs: None,
            decay: None,
        }
    }

    /// Whether `name` belongs to this group.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.pattern.as_bytes(), name.as_bytes())
    }
}

/// `*`-only glob matching (no other metacharacters).
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// Look-ahead (Zhang et al., 2019) as airbench uses it: every `every` steps a
/// slow copy `e` of the weights (and of the buffers passed with them, such as
/// batch norm's running statistics) moves toward them, `e ← e + (1 − d)(θ − e)`,
/// and the weights restart from it, `θ ← e`. The decay grows over the run,
/// `d = decay·(n/N)^power` at step `n` of `N`, so early steps keep the newest
/// weights and late ones average; at the end the weights become `e`.
#[derive(Clone, Debug, PartialEq)]
pub struct Lookahead {
    /// Steps between synchronisations.
    pub every: u64,
    /// The largest decay `d`, reached at the last step.
    pub decay: f64,
    /// Exponent of the decay's growth.
    pub power: f64,
    /// Steps in the whole run `N`.
    pub total_steps: u64,
}

impl Lookahead {
    /// The decay at step `n`.
    pub fn decay_at(&self, n: u64) -> f64 {
        let t = (n as f64 / self.total_steps.max(1) as f64).min(1.0);
        self.decay * t.powf(self.power)
    }

    fn validate(&self) -> Result<(), OptimError> {
        if self.every == 0 {
            return Err(OptimError::Config(
                "lookahead every must be at least 1 step".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.decay) {
            return Err(OptimError::Config(format!(
                "lookahead decay must lie in [0, 1), got {}",
                self.decay
            )));
        }
        if !(self.power.is_finite() && self.power >= 0.0) {
            return Err(OptimError::Config(format!(
                "lookahead power must be ≥ 0, got {}",
                self.power
            )));
        }
        Ok(())
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
    /// Per-name settings; the first group whose pattern matches applies.
    pub groups: Vec<ParamGroup>,
    step: u64,
    state: BTreeMap<String, Vec<Vec<T>>>,
    lookahead: Option<Lookahead>,
    slow: BTreeMap<String, Vec<T>>,
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
            Method::Momentum { mu } | Method::MomentumTorch { mu, .. } => unit("momentum", *mu)?,
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
            groups: Vec::new(),
            step: 0,
            state: BTreeMap::new(),
            lookahead: None,
            slow: BTreeMap::new(),
        })
    }

    /// Adds per-name groups (learning-rate and decay factors, training epochs).
    pub fn with_groups(mut self, groups: Vec<ParamGroup>) -> Result<Self, OptimError> {
        for g in &groups {
            for (what, v) in [("lr_scale", g.lr_scale), ("decay_scale", g.decay_scale)] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(OptimError::Config(format!(
                        "group {:?}: {what} must be ≥ 0, got {v}",
                        g.pattern
                    )));
                }
            }
        }
        self.groups = groups;
        Ok(self)
    }

    /// Adds look-ahead ([`Optimizer::lookahead_sync`] does the synchronising).
    pub fn with_lookahead(mut self, lookahead: Lookahead) -> Result<Self, OptimError> {
        lookahead.validate()?;
        self.lookahead = Some(lookahead);
        Ok(self)
    }

    /// The look-ahead settings, if any.
    pub fn lookahead(&self) -> Option<&Lookahead> {
        self.lookahead.as_ref()
    }

    /// Called after each step with the parameters' values and any buffers:
    /// on every `every`-th step, synchronises them with their slow copies
    /// ([`Lookahead`]). With `finish` (after the last step) the tensors are
    /// set to their slow copies, which stay as they are (`d = 1`). Does
    /// nothing without look-ahead. Returns whether it synchronised.
    pub fn lookahead_sync<'a>(
        &mut self,
        tensors: impl IntoIterator<Item = (String, &'a mut Tensor<T>)>,
        finish: bool,
    ) -> Result<bool, OptimError> {
        let Some(la) = &self.lookahead else {
            return Ok(false);
        };
        if !finish && (self.step == 0 || !self.step.is_multiple_of(la.every)) {
            return Ok(false);
        }
        let w = if finish {
            0.0
        } else {
            1.0 - la.decay_at(self.step)
        };
        for (name, t) in tensors {
            let theta = t.data_mut();
            let slow = self
                .slow
                .entry(name.clone())
                .or_insert_with(|| theta.to_vec());
            if slow.len() != theta.len() {
                return Err(OptimError::Shape {
                    name,
                    what: format!(
                        "look-ahead copy has {} values, the tensor {}",
                        slow.len(),
                        theta.len()
                    ),
                });
            }
            k::lookahead_sync(slow, theta, T::of(w));
        }
        Ok(true)
    }

    /// The group settings of parameter `name` (factors 1 without a group).
    fn group_of(&self, name: &str) -> Option<&ParamGroup> {
        self.groups.iter().find(|g| g.matches(name))
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
            if p.frozen {
                continue;
            }
            let (lr_scale, decay_scale, decays) = match self.group_of(&name) {
                Some(g) if g.epochs.is_some_and(|e| epoch >= e) => continue,
                Some(g) => (g.lr_scale, g.decay_scale, g.decay.unwrap_or(p.decay)),
                None => (1.0, 1.0, p.decay),
            };
            let Some(g) = grad_of(p) else { continue };
            let wd = if decays {
                self.weight_decay * decay_scale
            } else {
                0.0
            };
            self.update(&name, p, &g, lr * lr_scale, wd)?;
        }
        Ok(lr)
    }

    fn update(
        &mut self,
        name: &str,
        p: &mut Param<T>,
        grad: &Tensor<T>,
        lr: f64,
        weight_decay: f64,
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
        // `weight_decay` is 0 for parameters the penalty does not apply to.
        let penalised = weight_decay > 0.0 && !decoupled;
        if let Method::Momentum { mu } = self.method {
            // The hot path: penalty and update fused, no copy of the gradient.
            let v = &mut slot(&mut self.state, name, n, 1)?[0];
            let (theta, g) = (p.value.data_mut(), grad.to_contiguous_slice());
            let (lr, mu) = (T::of(lr), T::of(mu));
            if penalised {
                k::sgd_momentum_l2(theta, &g, v, lr, mu, T::of(weight_decay));
            } else {
                k::sgd_momentum(theta, &g, v, lr, mu);
            }
            return Ok(());
        }
        let mut g = grad.to_vec();
        if penalised {
            // ∇[(λ/2) wᵀw] = λw
            elementwise::axpy(T::of(weight_decay), &p.value.to_contiguous_slice(), &mut g);
        }
        let state = slot(&mut self.state, name, n, self.method.slots().len())?;
        let theta = p.value.data_mut();
        let lr_t = T::of(lr);
        match &self.method {
            Method::Sgd => k::sgd(theta, &g, lr_t),
            Method::Momentum { mu } => k::sgd_momentum(theta, &g, &mut state[0], lr_t, T::of(*mu)),
            // `g` holds the penalty already.
            Method::MomentumTorch { mu, nesterov } => k::sgd_momentum_torch(
                theta,
                &g,
                &mut state[0],
                lr_t,
                T::of(*mu),
                T::zero(),
                *nesterov,
            ),
            Method::Adagrad { alpha } => k::adagrad(theta, &g, &mut state[0], lr_t, T::of(*alpha)),
            Method::RmsProp { decay, alpha } => {
                k::rmsprop(theta, &g, &mut state[0], lr_t, T::of(*decay), T::of(*alpha))
            }
            Method::Adam { beta1, beta2, eps } | Method::AdamW { beta1, beta2, eps } => {
                let wd = if decoupled { weight_decay } else { 0.0 };
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

    /// The optimiser's state as named tensors (`<param>.<slot>` and
    /// `lookahead/<param>`), ready to be written next to a checkpoint. The
    /// step count is not among them: it is an integer ([`Optimizer::steps`]),
    /// kept exactly beside them (an f32 would round it past 2²⁴ steps).
    pub fn state_tensors(&self) -> Vec<(String, Tensor<T>)> {
        let mut out = Vec::new();
        for (name, bufs) in &self.state {
            for (slot, b) in self.method.slots().iter().zip(bufs) {
                out.push((
                    format!("{name}.{slot}"),
                    Tensor::from_slice(b, &[b.len()]).expect("flat"),
                ));
            }
        }
        for (name, e) in &self.slow {
            out.push((
                format!("lookahead/{name}"),
                Tensor::from_slice(e, &[e.len()]).expect("flat"),
            ));
        }
        out
    }

    /// Restores state written by [`Optimizer::state_tensors`] for the same
    /// update rule, `steps` steps into training ([`Optimizer::steps`] when it
    /// was saved). Checks every buffer against the parameter it belongs to:
    /// a missing, extra, mis-sized or non-finite buffer is an error naming it.
    pub fn load_state_tensors<'a>(
        &mut self,
        steps: u64,
        tensors: &[(String, Tensor<T>)],
        params: impl IntoIterator<Item = (String, &'a Param<T>)>,
    ) -> Result<(), OptimError> {
        let mut state = BTreeMap::new();
        let mut known = std::collections::BTreeSet::new();
        for (name, p) in params {
            let mut bufs = Vec::new();
            for slot in self.method.slots() {
                let key = format!("{name}.{slot}");
                known.insert(key.clone());
                match tensors.iter().find(|(n, _)| *n == key) {
                    // A parameter that never trained (frozen, or no step yet)
                    // has no state; any other must have all of it, or the
                    // resumed run would silently restart its momentum.
                    None if bufs.is_empty() && (p.frozen || steps == 0) => break,
                    None if bufs.is_empty()
                        && !tensors
                            .iter()
                            .any(|(n, _)| n.starts_with(&format!("{name}."))) =>
                    {
                        return Err(OptimError::Shape {
                            name,
                            what: format!(
                                "saved state lacks {key}: the checkpoint does not hold this optimizer's state"
                            ),
                        })
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
                    Some((_, t)) => {
                        let v = t.to_vec();
                        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                            return Err(OptimError::Shape {
                                name,
                                what: format!(
                                    "saved {slot} holds a non-finite value ({}) at index {i}",
                                    v[i]
                                ),
                            });
                        }
                        bufs.push(v)
                    }
                }
            }
            if !bufs.is_empty() {
                state.insert(name, bufs);
            }
        }
        if let Some((n, _)) = tensors
            .iter()
            .find(|(n, _)| !n.starts_with("lookahead/") && !known.contains(n))
        {
            return Err(OptimError::Config(format!(
                "saved state has {n}, which belongs to no parameter of this model and optimizer"
            )));
        }
        let mut slow = BTreeMap::new();
        for (n, t) in tensors {
            if let Some(name) = n.strip_prefix("lookahead/") {
                if self.lookahead.is_none() {
                    return Err(OptimError::Config(format!(
                        "saved state has a look-ahead copy of {name}, but this optimizer has no look-ahead"
                    )));
                }
                slow.insert(name.to_string(), t.to_vec());
            }
        }
        self.step = steps;
        self.state = state;
        self.slow = slow;
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
