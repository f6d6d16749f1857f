//! The element-type trait: what a tensor can hold.

use num_traits::Float;
use std::fmt::{Debug, Display};

/// A floating-point element type a [`crate::Tensor`] can hold.
///
/// Implemented for `f32` (the fast path) and `f64` (used to check gradients by
/// finite differences).
pub trait Element:
    Float + Default + Debug + Display + Send + Sync + std::iter::Sum + 'static
{
    /// Short name of the type (`"f32"`, `"f64"`), used in messages and file formats.
    const NAME: &'static str;

    /// Converts from `f64` (`T::of(0.5)`), rounding to the nearest representable value.
    fn of(x: f64) -> Self;

    /// Converts to `f64` exactly (f32 and f64 both embed in f64).
    fn as_f64(self) -> f64;
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    #[inline]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Element for f64 {
    const NAME: &'static str = "f64";
    #[inline]
    fn of(x: f64) -> Self {
        x
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self
    }
}
