//! `[data]`: the data set, its splits, subsets and background windows, and
//! the training augmentation (`data.preprocess` and `data.augment` are read by
//! [`crate::data_spec`]).

use super::Spec;
use serde::Deserialize;

/// `[data]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Dataset name or path.
    pub dataset: String,
    /// Training items held out as the validation split.
    #[serde(default)]
    pub validation: usize,
    /// Use only `subset` training items, a random choice fixed by `train.seed` (quick runs).
    #[serde(default)]
    pub subset: Option<usize>,
    /// Use only `test_subset` test items, a random choice fixed by `train.seed` (quick runs).
    #[serde(default)]
    pub test_subset: Option<usize>,
    /// Add a class `"background"` for detection by windows (section 12.4):
    /// `background · n` windows cut from canvases of each split's own images
    /// (empty places, parts of objects, windows astride two), after the
    /// subsets are drawn ([`strata_data::with_background`]).
    #[serde(default)]
    pub background: Option<f64>,
    /// Preprocessing steps, fitted on the training split (see [`crate::data_spec`]).
    #[serde(default)]
    pub preprocess: Vec<toml::Value>,
    /// Augmentation of training minibatches (see [`crate::data_spec`]).
    #[serde(default)]
    pub augment: Option<toml::Value>,
}

impl Spec {
    /// The training augmentation, seeded from `train.seed` (None without steps).
    pub fn augmentation(&self) -> Option<strata_data::Augmentation> {
        if self.augment.is_empty() {
            return None;
        }
        let a = strata_data::Augmentation::new(self.train.seed ^ 0xa96_0000);
        Some(self.augment.iter().cloned().fold(a, |a, s| a.then(s)))
    }
}
