//! What a run writes as it trains: `metrics.jsonl`, `metrics.csv`, the loss
//! and accuracy plots, and the model and checkpoint after each epoch; and
//! once it has: the test evaluation, the confusion table and `summary.json`.

use super::folder::{save_checkpoint, save_model, write_text};
use super::plan::Plan;
use super::{DataParallel, RunError, RunOptions, Summary};
use crate::checkpoint::write_atomic;
use crate::fit::{evaluate_with, EpochReport, Evaluation, Observer, StepInfo};
use crate::plot;
use crate::spec::Spec;
use std::path::{Path, PathBuf};
use strata_data::FittedPipeline;
use strata_kernels::gemm::{bf16_available, MatmulPrecision};
use strata_nn::{parameter_count, Module};
use strata_optim::Optimizer;

pub(super) struct Metrics {
    pub(super) jsonl: String,
    pub(super) step_losses: Vec<f64>,
    pub(super) epochs: Vec<EpochReport>,
    pub(super) train_seconds: f64,
}

/// Writes logs, plots and checkpoints as training goes.
pub(super) struct RunObserver<'a> {
    pub(super) out: PathBuf,
    pub(super) spec: &'a Spec,
    pub(super) pipeline: Option<&'a FittedPipeline>,
    pub(super) metrics: Metrics,
    pub(super) pending_steps: Vec<StepInfo>,
    /// The epoch whose checkpoint is in `out/checkpoint`, if any.
    pub(super) checkpointed: Option<usize>,
    pub(super) inner: &'a mut dyn Observer,
    /// Rank 0 of its group (or alone): the process that writes.
    pub(super) lead: bool,
}

impl RunObserver<'_> {
    fn write_logs(&mut self) -> Result<(), String> {
        let m = &self.metrics;
        write_atomic(&self.out.join("metrics.jsonl"), m.jsonl.as_bytes())
            .map_err(|e| e.to_string())?;
        let layers: Vec<String> = m
            .epochs
            .last()
            .map(|r| r.dead_units.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let mut csv = String::from("step,epoch,loss,lr,train_accuracy,validation_accuracy,seconds");
        for l in &layers {
            csv.push_str(&format!(",dead.{l}"));
        }
        csv.push('\n');
        for r in &m.epochs {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{}",
                r.step,
                r.epoch,
                r.loss,
                r.lr,
                r.train_accuracy,
                r.validation_accuracy
                    .map_or(String::new(), |v| v.to_string()),
                r.seconds
            ));
            for l in &layers {
                let v = r
                    .dead_units
                    .iter()
                    .find(|(n, _)| n == l)
                    .map(|(_, f)| f.to_string());
                csv.push_str(&format!(",{}", v.unwrap_or_default()));
            }
            csv.push('\n');
        }
        write_atomic(&self.out.join("metrics.csv"), csv.as_bytes()).map_err(|e| e.to_string())?;
        plot::loss_plot(&self.out.join("loss.png"), &m.step_losses)?;
        let train: Vec<f64> = m.epochs.iter().map(|r| r.train_accuracy).collect();
        let val: Vec<Option<f64>> = m.epochs.iter().map(|r| r.validation_accuracy).collect();
        plot::accuracy_plot(&self.out.join("accuracy.png"), &train, &val)
    }
}

impl Observer for RunObserver<'_> {
    fn on_step(&mut self, info: &StepInfo) {
        self.pending_steps.push(*info);
        self.inner.on_step(info);
    }

    fn on_message(&mut self, message: &str) {
        self.inner.on_message(message);
    }

    fn stop_requested(&self) -> bool {
        self.inner.stop_requested()
    }

    fn on_epoch(
        &mut self,
        r: &EpochReport,
        model: &dyn Module<f32>,
        opt: &Optimizer<f32>,
    ) -> Result<(), String> {
        if !self.lead {
            self.pending_steps.clear();
            return self.inner.on_epoch(r, model, opt);
        }
        for s in self.pending_steps.drain(..) {
            self.metrics.jsonl.push_str(&format!(
                "{{\"kind\":\"step\",\"step\":{},\"epoch\":{},\"loss\":{},\"lr\":{}}}\n",
                s.step,
                s.epoch,
                json_num(s.loss),
                json_num(s.lr)
            ));
            self.metrics.step_losses.push(s.loss);
        }
        let dead: Vec<String> = r
            .dead_units
            .iter()
            .map(|(n, f)| format!("\"{n}\":{}", json_num(*f)))
            .collect();
        self.metrics.train_seconds += r.seconds;
        self.metrics.jsonl.push_str(&format!(
            "{{\"kind\":\"epoch\",\"step\":{},\"epoch\":{},\"loss\":{},\"lr\":{},\"train_accuracy\":{},\"validation_accuracy\":{},\"dead_units\":{{{}}},\"seconds\":{},\"total_seconds\":{}}}\n",
            r.step,
            r.epoch,
            json_num(r.loss),
            json_num(r.lr),
            json_num(r.train_accuracy),
            r.validation_accuracy.map_or("null".into(), json_num),
            dead.join(","),
            json_num(r.seconds),
            json_num(self.metrics.train_seconds),
        ));
        self.metrics.epochs.push(r.clone());
        for (layer, f) in &r.dead_units {
            if *f > self.spec.train.dead_unit_warning {
                self.inner.on_message(&format!(
                    "warning: {:.0}% of the units of {layer} were dead (zero for every item) in epoch {}; a smaller learning rate may help",
                    100.0 * f,
                    r.epoch
                ));
            }
        }
        self.write_logs()?;
        save_model(
            &self.out.join("model.safetensors"),
            model,
            self.pipeline,
            self.spec,
            r.epoch,
        )
        .map_err(|e| e.to_string())?;
        if r.epoch.is_multiple_of(self.spec.train.checkpoint_every)
            || r.epoch == self.spec.train.epochs
        {
            save_checkpoint(&self.out, model, opt, self.spec, r.epoch)
                .map_err(|e| e.to_string())?;
            self.checkpointed = Some(r.epoch);
        }
        self.inner.on_epoch(r, model, opt)
    }
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

/// Rebuilds metrics of epochs `1..=epoch` from an earlier `metrics.jsonl`.
pub(super) fn restore_metrics(out: &Path, epoch: usize) -> Metrics {
    let mut m = Metrics {
        jsonl: String::new(),
        step_losses: Vec::new(),
        epochs: Vec::new(),
        train_seconds: 0.0,
    };
    let Ok(text) = std::fs::read_to_string(out.join("metrics.jsonl")) else {
        return m;
    };
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let e = v["epoch"].as_u64().unwrap_or(u64::MAX) as usize;
        if e > epoch {
            continue;
        }
        m.jsonl.push_str(line);
        m.jsonl.push('\n');
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        match v["kind"].as_str() {
            Some("step") => m.step_losses.push(f("loss")),
            Some("epoch") => {
                m.train_seconds = f("total_seconds");
                let dead = v["dead_units"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, x)| (k.clone(), x.as_f64().unwrap_or(0.0)))
                            .collect()
                    })
                    .unwrap_or_default();
                m.epochs.push(EpochReport {
                    epoch: e,
                    step: v["step"].as_u64().unwrap_or(0),
                    loss: f("loss"),
                    step_losses: Vec::new(),
                    lr: f("lr"),
                    train_accuracy: f("train_accuracy"),
                    validation_accuracy: v["validation_accuracy"].as_f64(),
                    dead_units: dead,
                    seconds: f("seconds"),
                    samples_per_second: 0.0,
                });
            }
            _ => {}
        }
    }
    m
}

/// Confusion matrix as a text table.
pub fn confusion_text(e: &Evaluation, names: &[String]) -> String {
    let w = names.iter().map(|n| n.len()).max().unwrap_or(1).max(6);
    let mut s = format!("{:>w$} | predicted →\n", "true ↓");
    s.push_str(&format!("{:>w$} |", ""));
    for n in names {
        s.push_str(&format!(" {n:>w$}"));
    }
    s.push('\n');
    for (n, row) in names.iter().zip(&e.confusion) {
        s.push_str(&format!("{n:>w$} |"));
        for c in row {
            s.push_str(&format!(" {c:>w$}"));
        }
        s.push('\n');
    }
    s.push_str(&format!("accuracy {:.4}\n", e.accuracy));
    s
}

/// After fitting: the summary (with warnings for dead layers and a test
/// accuracy at chance), the test evaluation with `confusion.txt` and
/// `confusion.png`, and `summary.json`.
pub(super) fn summarise(
    plan: &mut Plan,
    opts: &RunOptions,
    metrics: Metrics,
    data_parallel: Option<DataParallel>,
    lead: bool,
    progress: &mut dyn Observer,
) -> Result<Summary, RunError> {
    let last = metrics.epochs.last();
    let trained_items: f64 = metrics.epochs.len() as f64 * plan.data.train.len() as f64;
    let mut summary = Summary {
        test_accuracy: None,
        validation_accuracy: last.and_then(|r| r.validation_accuracy),
        train_seconds: metrics.train_seconds,
        epochs: plan.spec.train.epochs,
        parameters: parameter_count(&plan.model),
        samples_per_second: trained_items / metrics.train_seconds.max(1e-9),
        warnings: Vec::new(),
        data_parallel,
    };
    if plan.spec.train.precision() == Ok(MatmulPrecision::Bf16) && !bf16_available() {
        summary.warnings.push(
            "train.matmul_precision = \"bf16\": this CPU has no AMX-BF16 tiles (or the OS does not grant them), so the matrix products ran in f32".into(),
        );
    }
    if let Some(r) = last {
        for (layer, f) in &r.dead_units {
            if *f >= 0.9 {
                summary.warnings.push(format!(
                    "{:.0} % of the units of {layer} were dead in the last epoch: try a smaller learning rate, a smaller init_epsilon or a warm-up",
                    f * 100.0
                ));
            }
        }
    }
    if let Some(test_opts) = &plan.test {
        let eval = evaluate_with(&mut plan.model, &plan.data.test, test_opts)?;
        summary.test_accuracy = Some(eval.accuracy);
        let classes = plan.classes;
        let chance = 1.0 / classes.max(1) as f64;
        if eval.accuracy <= 1.5 * chance {
            summary.warnings.push(format!(
                "the test accuracy {:.2} % is at chance level ({:.2} % for {classes} classes): the network learned nothing usable",
                eval.accuracy * 100.0,
                chance * 100.0
            ));
        }
        let names = plan.data.test.class_names().to_vec();
        if lead {
            write_text(
                &opts.out.join("confusion.txt"),
                &confusion_text(&eval, &names),
            )?;
            plot::confusion_plot(&opts.out.join("confusion.png"), &eval.confusion, &names)
                .map_err(RunError::Other)?;
        }
    }
    let json =
        serde_json::to_string_pretty(&summary).map_err(|e| RunError::Other(e.to_string()))?;
    for w in &summary.warnings {
        progress.on_message(&format!("warning: {w}"));
    }
    if lead {
        write_text(&opts.out.join("summary.json"), &json)?;
    }
    Ok(summary)
}
