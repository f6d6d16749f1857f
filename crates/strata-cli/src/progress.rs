//! The training progress bar: epoch, step, loss, learning rate, samples/s, ETA.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;
use strata_train::nn::Module;
use strata_train::optim::Optimizer;
use strata_train::{EpochReport, Observer, StepInfo};

/// Shows a bar per epoch and prints one line per finished epoch.
pub struct Progress {
    bar: Option<ProgressBar>,
    epoch_start: Instant,
    samples: usize,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            bar: None,
            epoch_start: Instant::now(),
            samples: 0,
        }
    }

    fn bar(&mut self, info: &StepInfo) -> &ProgressBar {
        if self.bar.is_none() {
            let bar = ProgressBar::new(info.steps_in_epoch as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(info.epoch.to_string());
            self.epoch_start = Instant::now();
            self.samples = 0;
            self.bar = Some(bar);
        }
        self.bar.as_ref().expect("just set")
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn on_step(&mut self, info: &StepInfo) {
        self.samples += info.batch;
        let rate = self.samples as f64 / self.epoch_start.elapsed().as_secs_f64().max(1e-9);
        let bar = self.bar(info).clone();
        bar.set_position(info.step_in_epoch as u64 + 1);
        bar.set_message(format!(
            "loss {:.4} lr {:.3e} {:.0} samples/s",
            info.loss, info.lr, rate
        ));
    }

    fn on_message(&mut self, message: &str) {
        match &self.bar {
            Some(b) => b.println(message),
            None => eprintln!("{message}"),
        }
    }

    fn on_epoch(
        &mut self,
        r: &EpochReport,
        _: &dyn Module<f32>,
        _: &Optimizer<f32>,
    ) -> Result<(), String> {
        self.finish();
        let val = r
            .validation_accuracy
            .map_or(String::new(), |v| format!("  validation {:.2}%", 100.0 * v));
        let dead = r
            .dead_units
            .iter()
            .map(|(n, f)| format!("{n} {:.0}%", 100.0 * f))
            .collect::<Vec<_>>()
            .join(", ");
        let dead = if dead.is_empty() {
            String::new()
        } else {
            format!("  dead units: {dead}")
        };
        eprintln!(
            "epoch {:>3}  loss {:.4}  train {:.2}%{val}  lr {:.3e}  {:.1}s  {:.0} samples/s{dead}",
            r.epoch,
            r.loss,
            100.0 * r.train_accuracy,
            r.lr,
            r.seconds,
            r.samples_per_second
        );
        Ok(())
    }
}
