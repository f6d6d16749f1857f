//! Per-op wall-time profile: where a training step's time goes.
//!
//! A [`Profiler`] is a shared accumulator; a tape made with
//! [`crate::Tape::with_profiler`] adds to it the forward and backward time of
//! each op, keyed by op kind. Tapes without one pay a single branch per op.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Accumulated time of one op kind.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpTime {
    /// Forward calls.
    pub calls: u64,
    /// Total forward wall time.
    pub forward: Duration,
    /// Total backward wall time (vector-Jacobian product plus accumulation).
    pub backward: Duration,
}

/// A shared, cheaply cloned per-op timing accumulator.
#[derive(Clone, Debug, Default)]
pub struct Profiler(Arc<Mutex<BTreeMap<&'static str, OpTime>>>);

impl Profiler {
    /// An empty profile.
    pub fn new() -> Self {
        Self::default()
    }

    fn with(&self, kind: &'static str, f: impl FnOnce(&mut OpTime)) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(m.entry(kind).or_default());
    }

    pub(crate) fn add_forward(&self, kind: &'static str, t: Duration) {
        self.with(kind, |e| {
            e.calls += 1;
            e.forward += t;
        });
    }

    pub(crate) fn add_backward(&self, kind: &'static str, t: Duration) {
        self.with(kind, |e| e.backward += t);
    }

    /// Adds time measured outside a tape (e.g. the optimiser step) under `name`.
    pub fn add(&self, name: &'static str, forward: Duration, backward: Duration) {
        self.with(name, |e| {
            e.calls += 1;
            e.forward += forward;
            e.backward += backward;
        });
    }

    /// Forgets everything accumulated so far.
    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The profile by op name (entries of the same name merged), largest
    /// total time first.
    pub fn report(&self) -> Vec<(String, OpTime)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut merged: BTreeMap<String, OpTime> = BTreeMap::new();
        for (&kind, t) in m.iter() {
            let e = merged.entry(op_name(kind).to_string()).or_default();
            e.calls += t.calls;
            e.forward += t.forward;
            e.backward += t.backward;
        }
        let mut v: Vec<_> = merged.into_iter().collect();
        v.sort_by_key(|(_, t)| std::cmp::Reverse(t.forward + t.backward));
        v
    }
}

/// The op's function name from the type name of the closure it passed to
/// `push_op`: `…::matmul::{{closure}}` → `matmul`.
fn op_name(kind: &str) -> &str {
    let k = kind.trim_end_matches("::{{closure}}");
    // Skip generic arguments, whose paths contain `::` too.
    let mut depth = 0i32;
    let mut start = 0;
    let b = k.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'<' => depth += 1,
            b'>' => depth -= 1,
            b':' if depth == 0 && i + 1 < b.len() && b[i + 1] == b':' => start = i + 2,
            _ => {}
        }
    }
    // Drop the op's own generic arguments: `dropout<Rng>` → `dropout`.
    let last = &k[start..];
    last.split('<').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::op_name;

    #[test]
    fn names_from_closure_types() {
        assert_eq!(
            op_name("strata_autograd::ops::matmul::<impl strata_autograd::tape::Tape<T>>::matmul::{{closure}}"),
            "matmul"
        );
        assert_eq!(op_name("leaf"), "leaf");
        assert_eq!(op_name("a::b<c::d>::relu"), "relu");
        assert_eq!(
            op_name("x::<impl Tape<T>>::dropout<rand::Xoshiro>::{{closure}}"),
            "dropout"
        );
    }
}
