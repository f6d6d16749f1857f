//! `[optimizer]`: the update rule, its learning-rate schedule, parameter
//! groups and look-ahead, and the [`strata_optim::Optimizer`] they make.

use super::{LayerSpec, Spec};
use serde::Deserialize;
use strata_optim::{Method, Schedule};

/// `[optimizer]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    /// `sgd`, `adagrad`, `rmsprop`, `adam` or `adamw`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Learning rate of the default constant schedule.
    #[serde(default)]
    pub lr: Option<f64>,
    /// Momentum `μ` for `sgd` (0: plain gradient descent).
    #[serde(default)]
    pub momentum: f64,
    /// `λ`, weight of the L2 penalty on weights (decoupled for `adamw`).
    #[serde(default)]
    pub weight_decay: f64,
    /// Adagrad/RMSprop `α`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// RMSprop decay rate `Δ`.
    #[serde(default = "default_decay")]
    pub decay: f64,
    /// Adam `β₁`.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// Adam `β₂`.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Adam `ε`.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Learning-rate schedule (default: constant `lr`).
    #[serde(default)]
    pub schedule: Option<ScheduleSpec>,
    /// Linear warm-up steps before the schedule.
    #[serde(default)]
    pub warmup_steps: u64,
    /// Nesterov momentum for `sgd` (implies the PyTorch convention).
    #[serde(default)]
    pub nesterov: bool,
    /// Momentum convention of `sgd`: `"chapter"` (12.2.4's `v ← μv + η∇;
    /// θ ← θ − v`, the default) or `"pytorch"` (`b ← μb + ∇; θ ← θ − ηb`).
    #[serde(default)]
    pub convention: Option<String>,
    /// Per-name settings, first match wins: `[{ params = "*.beta", lr_scale = 64,
    /// decay_scale = 0.015625 }]` (airbench's batch-norm shifts), `epochs = 3`
    /// to freeze the group after that many epochs.
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
    /// Look-ahead: `{ every = 5, decay = 0.7738, power = 3 }`.
    #[serde(default)]
    pub lookahead: Option<LookaheadSpec>,
}

/// One entry of `optimizer.groups`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Parameter names, `*` matching any run of characters (`*.beta`).
    pub params: String,
    /// Factor on the learning rate.
    #[serde(default = "one")]
    pub lr_scale: f64,
    /// Factor on the weight decay.
    #[serde(default = "one")]
    pub decay_scale: f64,
    /// Train only in the first this many epochs.
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Whether the weight decay applies (default: to weights, not to biases
    /// and batch-norm parameters).
    #[serde(default)]
    pub decay: Option<bool>,
}

fn one() -> f64 {
    1.0
}

/// `optimizer.lookahead`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookaheadSpec {
    /// Steps between synchronisations.
    #[serde(default = "default_every")]
    pub every: u64,
    /// The decay reached at the end of the run.
    pub decay: f64,
    /// Exponent of the decay's growth over the run.
    #[serde(default = "default_power")]
    pub power: f64,
}

fn default_every() -> u64 {
    5
}
fn default_power() -> f64 {
    3.0
}

fn default_kind() -> String {
    "sgd".into()
}
fn default_alpha() -> f64 {
    1e-6
}
fn default_decay() -> f64 {
    0.9
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// `optimizer.schedule`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ScheduleSpec {
    /// Fixed rate.
    Constant {
        /// The rate.
        lr: f64,
    },
    /// The chapter's `η = 1/(a + b·epoch)`.
    InverseEpoch {
        /// `a`.
        a: f64,
        /// `b`.
        b: f64,
    },
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Initial rate.
        lr: f64,
        /// Factor.
        gamma: f64,
        /// Epochs between decays.
        every: usize,
    },
    /// `lr` times a piecewise-linear factor of the fraction of the run's
    /// steps: `points = [[0, 0.2], [0.23, 1], [1, 0.07]]` (airbench's triangle).
    Piecewise {
        /// The rate a factor of 1 stands for.
        lr: f64,
        /// `[fraction, factor]` pairs, fractions increasing in `[0, 1]`.
        points: Vec<[f64; 2]>,
    },
    /// Cosine annealing from `lr` to `min_lr` over the run's steps after the warm-up.
    Cosine {
        /// Initial rate.
        lr: f64,
        /// Final rate.
        #[serde(default)]
        min_lr: f64,
    },
}

impl Spec {
    /// The optimiser's update rule.
    pub fn method(&self) -> Result<Method, String> {
        let o = &self.optimizer;
        let torch = match o.convention.as_deref() {
            None | Some("chapter") => o.nesterov,
            Some("pytorch") => true,
            Some(c) => {
                return Err(format!(
                    "unknown momentum convention {c:?}; expected \"chapter\" or \"pytorch\""
                ))
            }
        };
        if o.nesterov && o.convention.as_deref() == Some("chapter") {
            return Err("Nesterov momentum is written in the PyTorch convention: drop convention = \"chapter\"".into());
        }
        if (o.nesterov || o.convention.is_some()) && !matches!(o.kind.as_str(), "sgd" | "momentum")
        {
            return Err(format!(
                "nesterov and convention apply to sgd, not {}",
                o.kind
            ));
        }
        if o.nesterov && o.momentum == 0.0 {
            return Err("Nesterov momentum needs optimizer.momentum > 0".into());
        }
        Ok(match o.kind.as_str() {
            "sgd" if o.momentum == 0.0 => Method::Sgd,
            "sgd" | "momentum" if torch => Method::MomentumTorch {
                mu: o.momentum,
                nesterov: o.nesterov,
            },
            "sgd" | "momentum" => Method::Momentum { mu: o.momentum },
            "adagrad" => Method::Adagrad { alpha: o.alpha },
            "rmsprop" => Method::RmsProp {
                decay: o.decay,
                alpha: o.alpha,
            },
            "adam" => Method::Adam {
                beta1: o.beta1,
                beta2: o.beta2,
                eps: o.eps,
            },
            "adamw" => Method::AdamW {
                beta1: o.beta1,
                beta2: o.beta2,
                eps: o.eps,
            },
            k => {
                return Err(format!(
                "unknown optimizer {k:?}; expected sgd, momentum, adagrad, rmsprop, adam or adamw"
            ))
            }
        })
    }

    /// The learning-rate schedule; `steps_per_epoch` sizes the cosine schedule.
    pub fn schedule_for(&self, steps_per_epoch: u64) -> Schedule {
        let o = &self.optimizer;
        let base = match &o.schedule {
            None => Schedule::Constant {
                lr: o.lr.unwrap_or(0.01),
            },
            Some(ScheduleSpec::Constant { lr }) => Schedule::Constant { lr: *lr },
            Some(ScheduleSpec::InverseEpoch { a, b }) => Schedule::InverseEpoch { a: *a, b: *b },
            Some(ScheduleSpec::Step { lr, gamma, every }) => Schedule::Step {
                lr: *lr,
                gamma: *gamma,
                every: *every,
            },
            // The cosine starts after the warm-up, so it spans the steps left:
            // the last step's rate is then `min_lr`, not what the curve has
            // reached `warmup_steps` before its end.
            Some(ScheduleSpec::Piecewise { lr, points }) => Schedule::Piecewise {
                lr: *lr,
                points: points.iter().map(|p| (p[0], p[1])).collect(),
                total_steps: (steps_per_epoch * self.train.epochs as u64)
                    .saturating_sub(o.warmup_steps)
                    .max(1),
            },
            Some(ScheduleSpec::Cosine { lr, min_lr }) => Schedule::Cosine {
                lr: *lr,
                min_lr: *min_lr,
                total_steps: (steps_per_epoch * self.train.epochs as u64)
                    .saturating_sub(o.warmup_steps)
                    .max(1),
            },
        };
        if o.warmup_steps > 0 {
            Schedule::Warmup {
                steps: o.warmup_steps,
                after: Box::new(base),
            }
        } else {
            base
        }
    }

    /// The per-name optimiser groups: those the layers imply (a whitening
    /// layer's biases that train `bias_epochs`), then `optimizer.groups`.
    pub fn groups(&self) -> Vec<strata_optim::ParamGroup> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            if let LayerSpec::Whiten {
                bias_epochs: Some(e),
                ..
            } = l
            {
                out.push(strata_optim::ParamGroup {
                    epochs: Some(*e),
                    ..strata_optim::ParamGroup::new(format!("layers.{i}.bias"))
                });
            }
        }
        out.extend(
            self.optimizer
                .groups
                .iter()
                .map(|g| strata_optim::ParamGroup {
                    pattern: g.params.clone(),
                    lr_scale: g.lr_scale,
                    decay_scale: g.decay_scale,
                    epochs: g.epochs,
                    decay: g.decay,
                }),
        );
        out
    }

    /// The look-ahead for a run of `total_steps` steps, if the spec has one.
    pub fn lookahead(&self, total_steps: u64) -> Option<strata_optim::Lookahead> {
        self.optimizer
            .lookahead
            .as_ref()
            .map(|l| strata_optim::Lookahead {
                every: l.every,
                decay: l.decay,
                power: l.power,
                total_steps,
            })
    }

    /// The optimiser the spec describes for `steps_per_epoch` steps an epoch.
    pub fn optimizer_for(
        &self,
        steps_per_epoch: u64,
    ) -> Result<strata_optim::Optimizer<f32>, String> {
        let mut opt = strata_optim::Optimizer::new(
            self.method()?,
            self.optimizer.weight_decay,
            self.schedule_for(steps_per_epoch),
        )
        .map_err(|e| e.to_string())?
        .with_groups(self.groups())
        .map_err(|e| e.to_string())?;
        if let Some(l) = self.lookahead(steps_per_epoch * self.train.epochs as u64) {
            opt = opt.with_lookahead(l).map_err(|e| e.to_string())?;
        }
        Ok(opt)
    }

    /// The schedule with a nominal epoch length (for validation and display).
    pub fn schedule(&self) -> Schedule {
        self.schedule_for(1)
    }
}
