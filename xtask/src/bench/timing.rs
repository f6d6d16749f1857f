//! Rates as the median over timed windows after a warm-up.

use std::time::{Duration, Instant};

/// How long to measure.
pub struct Timing {
    /// Minimum length of one timed window.
    pub window_ms: u64,
    /// Number of timed windows (the median is reported).
    pub windows: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            window_ms: 300,
            windows: 7,
        }
    }
}

impl Timing {
    /// Median of `work_per_call × calls / seconds` over the windows, after one
    /// warm-up window.
    pub fn rate(&self, work_per_call: f64, mut f: impl FnMut()) -> f64 {
        self.rates(&mut [(work_per_call, &mut f)])[0]
    }

    /// [`Timing::rate`] for several candidates at once, their windows taken in
    /// turn (A, B, C, A, B, C, …) so that load from other processes on a shared
    /// machine falls on all of them alike rather than on whichever ran during it.
    pub fn rates(&self, cands: &mut [(f64, &mut dyn FnMut())]) -> Vec<f64> {
        let window = Duration::from_millis(self.window_ms);
        let one = |work: f64, f: &mut dyn FnMut()| {
            let t = Instant::now();
            let mut calls = 0u64;
            while t.elapsed() < window {
                f();
                calls += 1;
            }
            work * calls as f64 / t.elapsed().as_secs_f64()
        };
        for (work, f) in cands.iter_mut() {
            one(*work, &mut **f);
        }
        let mut rates = vec![Vec::with_capacity(self.windows); cands.len()];
        for _ in 0..self.windows {
            for ((work, f), r) in cands.iter_mut().zip(&mut rates) {
                r.push(one(*work, &mut **f));
            }
        }
        rates
            .into_iter()
            .map(|mut r| {
                r.sort_by(f64::total_cmp);
                r[r.len() / 2]
            })
            .collect()
    }
}
