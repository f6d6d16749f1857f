//! Dead units (12.1.3): a ReLU unit whose output is zero for every item gets
//! zero gradient for every item, so it can never recover.

use std::collections::BTreeMap;

/// Tracks, per ReLU layer, which units produced a positive output at least
/// once over the items seen (a batch or a pass over data).
#[derive(Clone, Debug, Default)]
pub struct DeadUnits {
    alive: BTreeMap<String, Vec<bool>>,
    items: usize,
}

impl DeadUnits {
    /// An empty monitor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one minibatch of ReLU outputs of layer `name`: `values` holds
    /// `batch` items of `units` values each.
    pub fn record<T: PartialOrd + Default + Copy>(
        &mut self,
        name: &str,
        values: &[T],
        batch: usize,
    ) {
        if batch == 0 {
            return;
        }
        let units = values.len() / batch;
        let alive = self
            .alive
            .entry(name.to_string())
            .or_insert_with(|| vec![false; units]);
        if alive.len() != units {
            *alive = vec![false; units];
        }
        let zero = T::default();
        for item in values.chunks_exact(units.max(1)) {
            for (a, &v) in alive.iter_mut().zip(item) {
                *a |= v > zero;
            }
        }
        self.items = self.items.max(batch);
    }

    /// Fraction of dead units per layer, in layer-name order.
    pub fn fractions(&self) -> Vec<(String, f64)> {
        self.alive
            .iter()
            .map(|(k, v)| {
                let dead = v.iter().filter(|a| !**a).count();
                (k.clone(), dead as f64 / v.len().max(1) as f64)
            })
            .collect()
    }

    /// 1 for every unit that was ever active, 0 for the others, layer after
    /// layer in name order: what processes sharing the data add up to learn
    /// which units were active anywhere ([`DeadUnits::set_alive_mask`]).
    pub fn alive_mask(&self) -> Vec<f64> {
        self.alive
            .values()
            .flatten()
            .map(|&a| f64::from(u8::from(a)))
            .collect()
    }

    /// Marks active the units whose entry of `mask` (laid out as
    /// [`DeadUnits::alive_mask`]) is positive, the others dead. Returns false,
    /// changing nothing, when `mask` does not have one entry per unit.
    pub fn set_alive_mask(&mut self, mask: &[f64]) -> bool {
        let units: usize = self.alive.values().map(Vec::len).sum();
        if mask.len() != units {
            return false;
        }
        let mut rest = mask;
        for v in self.alive.values_mut() {
            let (head, tail) = rest.split_at(v.len());
            for (a, &m) in v.iter_mut().zip(head) {
                *a = m > 0.0;
            }
            rest = tail;
        }
        true
    }

    /// Forgets everything recorded.
    pub fn clear(&mut self) {
        self.alive.clear();
        self.items = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn monitor(a: &[f32], b: &[f32]) -> DeadUnits {
        let mut m = DeadUnits::new();
        m.record("a", a, 2);
        m.record("b", b, 1);
        m
    }

    #[test]
    fn a_mask_of_the_wrong_length_changes_nothing() {
        let mut m = monitor(&[1.0, 0.0, 0.0, 0.0], &[0.0, 2.0]);
        assert_eq!(m.alive_mask(), vec![1.0, 0.0, 0.0, 1.0]);
        assert!(!m.set_alive_mask(&[1.0; 3]));
        assert_eq!(m.alive_mask(), vec![1.0, 0.0, 0.0, 1.0]);
    }

    proptest! {
        /// Summing two monitors' masks gives what one monitor that saw both
        /// halves of the data records.
        #[test]
        fn summed_masks_equal_one_monitor_over_all_items(
            x in proptest::collection::vec(-1.0f32..1.0, 12),
            y in proptest::collection::vec(-1.0f32..1.0, 6),
        ) {
            let (mut first, second) = (monitor(&x[..6], &y[..3]), monitor(&x[6..], &y[3..]));
            let mut whole = DeadUnits::new();
            whole.record("a", &x, 4);
            whole.record("b", &y, 2);
            let mask: Vec<f64> = first
                .alive_mask()
                .iter()
                .zip(second.alive_mask())
                .map(|(p, q)| p + q)
                .collect();
            prop_assert!(first.set_alive_mask(&mask));
            prop_assert_eq!(first.fractions(), whole.fractions());
        }
    }
}
