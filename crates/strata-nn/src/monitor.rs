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

    /// Forgets everything recorded.
    pub fn clear(&mut self) {
        self.alive.clear();
        self.items = 0;
    }
}
