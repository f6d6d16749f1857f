//! Errors of layers and networks: they name the layer and the shapes involved.

use strata_autograd::AutogradError;
use thiserror::Error;

/// What went wrong in a layer.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum NnError {
    /// A layer refused its input or failed inside; `layer` is its path and kind,
    /// e.g. `layers.2 (linear 1024→10)`.
    #[error("layer {layer}: {source}")]
    Layer {
        /// Path and kind of the layer.
        layer: String,
        /// What went wrong.
        #[source]
        source: Box<NnError>,
    },
    /// The input's shape does not fit the layer.
    #[error("expected input of shape {expected} per sample, got {got:?}")]
    InputShape {
        /// The expectation, in words (e.g. `[784]`).
        expected: String,
        /// The per-sample shape received.
        got: Vec<usize>,
    },
    /// A configuration value is impossible (zero units, p outside [0,1), …).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A saved state does not fit the network.
    #[error("state: {0}")]
    State(String),
    /// An error from the graph.
    #[error(transparent)]
    Graph(#[from] AutogradError),
}

impl NnError {
    /// Wraps this error with the layer it happened in.
    pub fn in_layer(self, layer: impl Into<String>) -> Self {
        NnError::Layer {
            layer: layer.into(),
            source: Box::new(self),
        }
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, NnError>;
