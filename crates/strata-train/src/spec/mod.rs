//! The specification language (TOML): one file describes data, model,
//! optimiser and schedule, training and evaluation.
//!
//! ```toml
//! [data]
//! dataset = "digits"        # a name (digits, mnist, fashion-mnist, cifar10) or a path
//! validation = 300          # training items held out for validation
//!
//! [model]
//! layers = ["flatten", { linear = 64 }, "relu", { dropout = 0.2 }, { linear = 10 }]
//!
//! [optimizer]
//! kind = "sgd"              # sgd | adagrad | rmsprop | adam | adamw
//! momentum = 0.9
//! weight_decay = 1e-4       # λ of the (λ/2)Σ wᵀw penalty on weights
//! schedule = { kind = "inverse-epoch", a = 10.0, b = 1.0 }   # η = 1/(a + b·epoch)
//!
//! [train]
//! epochs = 10
//! batch = 64
//! seed = 1
//! ```
//!
//! Errors name the file, the line and the field, and say what was expected.
//!
//! This module parses the text and checks fields that span sections
//! ([`Spec::parse_with`], `validate`); each section's types live in their own
//! file (`data.rs`, `model.rs`, `optimizer.rs`, `train.rs`, `eval.rs`).

mod data;
mod eval;
mod model;
mod optimizer;
mod train;

pub use data::DataSpec;
pub use eval::EvalSpec;
pub use model::{LayerSpec, PadSpec, ResidualSpec, LAYER_KINDS};
pub use optimizer::{GroupSpec, LookaheadSpec, OptimizerSpec, ScheduleSpec};
pub use train::TrainSpec;

use model::parse_layer;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with a spec, located in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    /// The spec file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field, e.g. `model.layers[3]` or `train.epochs`.
    pub field: String,
    /// What was wrong and what was expected.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for SpecError {}

/// The whole experiment.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Where the spec came from.
    pub file: PathBuf,
    /// The text it was parsed from (after overrides), saved next to checkpoints.
    pub source: String,
    /// Data section.
    pub data: DataSpec,
    /// The layers, in order.
    pub layers: Vec<LayerSpec>,
    /// The line of each layer in the source (for messages).
    pub layer_lines: Vec<usize>,
    /// `model.init_epsilon`: the chapter's ε in the initialisation
    /// `w ~ N(0, ε·√2/n)` of the linear and conv layers listed in
    /// `model.layers` (default √2, He's `2/n`; residual blocks keep it).
    pub init_epsilon: Option<f64>,
    /// Optimiser section.
    pub optimizer: OptimizerSpec,
    /// Parsed `data.preprocess`.
    pub preprocess: Vec<strata_data::Preprocess>,
    /// Parsed `data.augment`.
    pub augment: Vec<strata_data::AugmentStep>,
    /// Training section.
    pub train: TrainSpec,
    /// Evaluation section.
    pub eval: EvalSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    data: DataSpec,
    model: RawModel,
    #[serde(default)]
    optimizer: OptimizerSpec,
    #[serde(default)]
    train: TrainSpec,
    #[serde(default)]
    eval: EvalSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    layers: Vec<toml::Spanned<toml::Value>>,
    #[serde(default)]
    init_epsilon: Option<f64>,
}

/// 1-based line of byte offset `pos` in `text`.
/// The dotted key whose value sits at byte `pos` of `text`, with its section
/// (`train.epochs` for `epochs = -3` under `[train]`;
/// `optimizer.schedule.every` for `every = -3` inside `schedule = { … }`
/// under `[optimizer]`), or "" when `pos` is not in a `key = value` line.
fn key_at(text: &str, pos: usize) -> String {
    let pos = pos.min(text.len());
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
    let line = &text[start..end];
    if line.trim_start().starts_with('#') {
        return String::new();
    }
    let Some((outer, _)) = line.split_once('=') else {
        return String::new();
    };
    let mut key = outer.trim().to_string();
    // Inside an inline table: the innermost key before `pos`.
    let before = &text[start..pos];
    if let Some(open) = before.find('{') {
        let inner = &before[open + 1..];
        if let Some(eq) = inner.rfind('=') {
            let k = inner[..eq].rsplit([',', '{']).next().unwrap_or("").trim();
            if !k.is_empty() {
                key = format!("{key}.{k}");
            }
        }
    }
    let section = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .and_then(|l| l.strip_prefix('[')?.split(']').next())
        .map(str::trim);
    match section {
        Some(sec) if !key.is_empty() => format!("{sec}.{key}"),
        _ => key,
    }
}

/// serde's wording for a mistyped value, in words a spec writer can act on.
fn explain(message: &str) -> String {
    let kinds = "a table such as { kind = \"cosine\", lr = 0.1 }: kind is \"constant\", \
                 \"inverse-epoch\", \"step\", \"cosine\" or \"piecewise\", rates and factors are \
                 numbers, `every` a whole number ≥ 1";
    if message.contains("ScheduleSpec") {
        format!(
            "optimizer.schedule: expected {kinds} ({})",
            message.replace("internally tagged enum ScheduleSpec", "a schedule")
        )
    } else if message.contains("number too large to fit in target type") {
        "the number is too large for this field".into()
    } else if let Some(rest) = message.strip_prefix("invalid value: integer `") {
        let v = rest.split('`').next().unwrap_or("");
        if message.contains("expected usize")
            || message.contains("expected u64")
            || message.contains("expected u32")
        {
            format!("expected a whole number ≥ 0, found {v}")
        } else {
            message.to_string()
        }
    } else {
        message.to_string()
    }
}

fn line_of(text: &str, pos: usize) -> usize {
    text[..pos.min(text.len())].matches('\n').count() + 1
}

/// Line of `key` inside `[section]` (best effort, for validation messages).
fn field_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut in_section = false;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            in_section = t.trim_matches(|c| c == '[' || c == ']').trim() == section;
            continue;
        }
        if in_section && t.split('=').next().map(str::trim) == Some(key) {
            return Some(i + 1);
        }
    }
    None
}

impl Spec {
    /// Reads and validates a spec file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SpecError> {
        Self::load_with(path, &[])
    }

    /// Reads a spec file and applies `overrides` (`section.key=value`, the value
    /// in TOML syntax) before validating it.
    pub fn load_with(path: impl AsRef<Path>, overrides: &[String]) -> Result<Self, SpecError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.into(),
            line: None,
            field: String::new(),
            message: format!("cannot read the spec: {e}"),
        })?;
        Self::parse_with(&text, path, overrides)
    }

    /// This spec with `overrides` applied to its source, revalidated; the
    /// source then records them (what a run folder's `spec.toml` keeps).
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self, SpecError> {
        Self::parse_with(&self.source, &self.file, overrides)
    }

    /// Parses spec text (`file` is only used in messages).
    pub fn parse(text: &str, file: impl AsRef<Path>) -> Result<Self, SpecError> {
        Self::parse_with(text, file, &[])
    }

    /// Parses spec text with overrides applied.
    pub fn parse_with(
        text: &str,
        file: impl AsRef<Path>,
        overrides: &[String],
    ) -> Result<Self, SpecError> {
        let file = file.as_ref().to_path_buf();
        let err = |line: Option<usize>, field: &str, message: String| SpecError {
            file: file.clone(),
            line,
            field: field.into(),
            message,
        };
        let source = if overrides.is_empty() {
            text.to_string()
        } else {
            let mut doc: toml::Table = toml::from_str(text).map_err(|e| {
                err(
                    e.span().map(|s| line_of(text, s.start)),
                    "",
                    e.message().to_string(),
                )
            })?;
            for o in overrides {
                apply_override(&mut doc, o).map_err(|m| err(None, o, m))?;
            }
            toml::to_string(&doc).map_err(|e| err(None, "", e.to_string()))?
        };
        let raw: RawSpec = toml::from_str(&source).map_err(|e| {
            let line = e.span().map(|s| line_of(&source, s.start));
            let key = e.span().map_or(String::new(), |s| key_at(&source, s.start));
            err(line, &key, explain(e.message().trim()))
        })?;
        let mut layers = Vec::with_capacity(raw.model.layers.len());
        let mut layer_lines = Vec::with_capacity(raw.model.layers.len());
        for (i, l) in raw.model.layers.iter().enumerate() {
            let line = line_of(&source, l.span().start);
            let layer = parse_layer(l.get_ref())
                .map_err(|m| err(Some(line), &format!("model.layers[{i}]"), m))?;
            layers.push(layer);
            layer_lines.push(line);
        }
        if let Some(e) = raw.model.init_epsilon {
            if !(e.is_finite() && e > 0.0) {
                return Err(err(
                    field_line(&source, "model", "init_epsilon"),
                    "model.init_epsilon",
                    format!("expected a positive number (the ε of N(0, ε·√2/n)), found {e}"),
                ));
            }
        }
        if layers.is_empty() {
            return Err(err(
                field_line(&source, "model", "layers"),
                "model.layers",
                "at least one layer is needed".into(),
            ));
        }
        let mut preprocess = Vec::new();
        for (i, v) in raw.data.preprocess.iter().enumerate() {
            let p = crate::data_spec::parse_preprocess(v).map_err(|m| {
                err(
                    field_line(&source, "data", "preprocess"),
                    &format!("data.preprocess[{i}]"),
                    m,
                )
            })?;
            preprocess.push(p);
        }
        let augment = match &raw.data.augment {
            None => Vec::new(),
            Some(v) => crate::data_spec::parse_augment(v)
                .map_err(|m| err(field_line(&source, "data", "augment"), "data.augment", m))?,
        };
        let spec = Spec {
            file: file.clone(),
            source: source.clone(),
            preprocess,
            augment,
            data: raw.data,
            layers,
            layer_lines,
            init_epsilon: raw.model.init_epsilon,
            optimizer: raw.optimizer,
            train: raw.train,
            eval: raw.eval,
        };
        spec.validate().map_err(|(section, key, m)| {
            err(
                field_line(&source, section, key),
                &format!("{section}.{key}"),
                m,
            )
        })?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), (&'static str, &'static str, String)> {
        let t = &self.train;
        if t.epochs == 0 {
            return Err(("train", "epochs", "must be at least 1".into()));
        }
        if t.batch == 0 {
            return Err(("train", "batch", "must be at least 1".into()));
        }
        if t.threads > strata_kernels::parallel::MAX_THREADS {
            return Err((
                "train",
                "threads",
                format!(
                    "must be at most {} (0: all cores), got {}",
                    strata_kernels::parallel::MAX_THREADS,
                    t.threads
                ),
            ));
        }
        if let Err(m) = t.precision() {
            return Err(("train", "matmul_precision", m));
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            return Err((
                "train",
                "label_smoothing",
                format!("must lie in [0, 1), got {}", t.label_smoothing),
            ));
        }
        if t.checkpoint_every == 0 {
            return Err((
                "train",
                "checkpoint_every",
                "must be at least 1 epoch".into(),
            ));
        }
        for (key, v) in [
            ("subset", self.data.subset),
            ("test_subset", self.data.test_subset),
        ] {
            if v == Some(0) {
                return Err((
                    "data",
                    key,
                    "must be at least 1 item (leave it out for all)".into(),
                ));
            }
        }
        if let Some(b) = self.data.background {
            if !(b > 0.0 && b <= 10.0) {
                return Err((
                    "data",
                    "background",
                    format!("is the number of background windows per image, in (0, 10]; got {b}"),
                ));
            }
        }
        if self.eval.batch == 0 {
            return Err(("eval", "batch", "must be at least 1".into()));
        }
        if self.eval.pad > 0 && !self.eval.multi_crop {
            return Err((
                "eval",
                "pad",
                "pads the views of multi-crop: set eval.multi_crop = true too".into(),
            ));
        }
        if let Some(t) = self.eval.tta {
            if self.eval.multi_crop {
                return Err((
                    "eval",
                    "tta",
                    "is another set of test-time views: use tta or multi_crop, not both".into(),
                ));
            }
            if t > 4 {
                return Err((
                    "eval",
                    "tta",
                    format!("shifts the test images by at most 4 pixels, got {t}"),
                ));
            }
        }
        if self.eval.pad > 16 {
            return Err((
                "eval",
                "pad",
                format!("must be at most 16 pixels, got {}", self.eval.pad),
            ));
        }
        self.method().map_err(|m| ("optimizer", "kind", m))?;
        let o = &self.optimizer;
        for (key, v) in [
            ("momentum", o.momentum),
            ("decay", o.decay),
            ("beta1", o.beta1),
            ("beta2", o.beta2),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(("optimizer", key, format!("must lie in [0, 1), got {v}")));
            }
        }
        for (key, v) in [("alpha", o.alpha), ("eps", o.eps)] {
            if !(v.is_finite() && v > 0.0) {
                return Err((
                    "optimizer",
                    key,
                    format!("must be a small positive number, got {v}"),
                ));
            }
        }
        if let Some(lr) = o.lr {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(("optimizer", "lr", format!("must be positive, got {lr}")));
            }
        }
        self.schedule()
            .validate()
            .map_err(|m| ("optimizer", "schedule", m))?;
        for (i, g) in o.groups.iter().enumerate() {
            for (what, v) in [("lr_scale", g.lr_scale), ("decay_scale", g.decay_scale)] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err((
                        "optimizer",
                        "groups",
                        format!("groups[{i}] ({:?}): {what} must be ≥ 0, got {v}", g.params),
                    ));
                }
            }
            if g.params.is_empty() {
                return Err((
                    "optimizer",
                    "groups",
                    format!("groups[{i}]: params must name parameters, e.g. \"*.beta\""),
                ));
            }
        }
        if let Some(l) = &o.lookahead {
            if l.every == 0 {
                return Err((
                    "optimizer",
                    "lookahead",
                    "every must be at least 1 step".into(),
                ));
            }
            if !(0.0..1.0).contains(&l.decay) {
                return Err((
                    "optimizer",
                    "lookahead",
                    format!("decay must lie in [0, 1), got {}", l.decay),
                ));
            }
            if !(l.power.is_finite() && l.power >= 0.0) {
                return Err((
                    "optimizer",
                    "lookahead",
                    format!("power must be ≥ 0, got {}", l.power),
                ));
            }
        }
        let wd = self.optimizer.weight_decay;
        if !(wd.is_finite() && wd >= 0.0) {
            return Err((
                "optimizer",
                "weight_decay",
                format!("must be ≥ 0, got {wd}"),
            ));
        }
        Ok(())
    }
}

/// Sets `a.b.c = value` in a TOML table; `value` is TOML (a bare word that is
/// not valid TOML is taken as a string).
pub fn apply_override(doc: &mut toml::Table, assignment: &str) -> Result<(), String> {
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {assignment:?}"))?;
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {}", value.trim())) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(value.trim().to_string()),
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    let (last, parents) = parts.split_last().ok_or("empty key")?;
    let mut table = doc;
    for p in parents {
        table = table
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| format!("{p} is not a table"))?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}
