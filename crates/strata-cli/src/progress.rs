//! The training progress bar: epoch, step, loss, learning rate, samples/s, ETA.
//! When stderr is not a terminal (a log file, `| tee`), where the bar would not
//! show, a plain progress line is printed every 30 s instead (every
//! `STRATA_PROGRESS_SECONDS` seconds if that is set).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Interval between plain progress lines when stderr is not a terminal:
/// `STRATA_PROGRESS_SECONDS`, else 30 s.
fn log_every() -> Duration {
    std::env::var("STRATA_PROGRESS_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(30), Duration::from_secs_f64)
}
use strata_train::nn::Module;
use strata_train::optim::Optimizer;
use strata_train::{EpochReport, Observer, StepInfo};

/// Set by the first Ctrl-C: training stops after the current step.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C (SIGINT, and SIGTERM) stop training cleanly after the current
/// step, so no log or checkpoint is cut half-way; a second Ctrl-C quits at once.
pub fn stop_on_ctrl_c() {
    // Failing to install the handler only loses the clean stop.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: quitting now");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: stopping after this step (Ctrl-C again to quit now)");
    });
}

/// Shows a bar per epoch and prints one line per finished epoch.
pub struct Progress {
    bar: Option<ProgressBar>,
    epoch_start: Instant,
    samples: usize,
    /// Whether stderr is a terminal (else plain lines replace the bar).
    terminal: bool,
    /// When the last plain line was printed, and the interval between them.
    last_line: Option<Instant>,
    every: Duration,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            bar: None,
            epoch_start: Instant::now(),
            samples: 0,
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
            every: log_every(),
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
    fn stop_requested(&self) -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }

    fn on_step(&mut self, info: &StepInfo) {
        self.samples += info.batch;
        let rate = self.samples as f64 / self.epoch_start.elapsed().as_secs_f64().max(1e-9);
        let bar = self.bar(info).clone();
        bar.set_position(info.step_in_epoch as u64 + 1);
        bar.set_message(format!(
            "loss {:.4} lr {:.3e} {:.0} samples/s",
            info.loss, info.lr, rate
        ));
        let start = *self.last_line.get_or_insert(self.epoch_start);
        if !self.terminal && start.elapsed() >= self.every {
            self.last_line = Some(Instant::now());
            let done = info.step_in_epoch + 1;
            let left = info.steps_in_epoch.saturating_sub(done);
            let eta = self.epoch_start.elapsed().as_secs_f64() / done as f64 * left as f64;
            eprintln!(
                "epoch {} step {done}/{}  loss {:.4}  lr {:.3e}  {rate:.0} samples/s  epoch ETA {eta:.0}s",
                info.epoch, info.steps_in_epoch, info.loss, info.lr
            );
        }
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
