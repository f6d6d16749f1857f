//! Weight initialisation (section 12.2.3).
//!
//! Each weight is an independent draw from a zero-mean normal whose *variance*
//! is `ε·√2/n`, `n` the unit's fan-in. The default `ε = √2` makes that variance
//! `2/n`, the usual He et al. value for ReLU networks. Biases start at 0 (the
//! chapter: "there is mild evidence that 0 is a better choice").

use rand::Rng;
use rand_distr::{Distribution, Normal};
use strata_autograd::Real;
use strata_tensor::Tensor;

/// The chapter's initialisation rule, `w ~ N(0, ε·√2/n)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Init {
    /// The chapter's `ε`; the default `√2` gives He's variance `2/n`.
    pub epsilon: f64,
    /// Initial value of biases.
    pub bias: f64,
}

impl Default for Init {
    fn default() -> Self {
        Self {
            epsilon: std::f64::consts::SQRT_2,
            bias: 0.0,
        }
    }
}

impl Init {
    /// Variance of the weight distribution for a unit with fan-in `n`: `ε·√2/n`.
    pub fn variance(&self, fan_in: usize) -> f64 {
        self.epsilon * std::f64::consts::SQRT_2 / fan_in.max(1) as f64
    }

    /// A weight tensor of `shape` for units with fan-in `fan_in`.
    pub fn weights<T: Real>(
        &self,
        shape: &[usize],
        fan_in: usize,
        rng: &mut impl Rng,
    ) -> Tensor<T> {
        let std = self.variance(fan_in).sqrt();
        let normal = Normal::new(0.0, std)
            .unwrap_or_else(|_| Normal::new(0.0, 0.0).expect("zero std is valid"));
        let n = shape.iter().product();
        let data = (0..n).map(|_| T::of(normal.sample(rng))).collect();
        Tensor::from_vec(data, shape).expect("length from shape")
    }

    /// A bias tensor of `n` entries.
    pub fn biases<T: Real>(&self, n: usize) -> Tensor<T> {
        Tensor::full(&[n], T::of(self.bias))
    }
}

/// Checks that a tensor of `shape` can be held: its element count and byte
/// size fit `usize`, and the allocator grants that much memory (probed with a
/// fallible reservation, so an impossible layer is an error, not an abort).
pub fn check_allocatable<T>(what: &str, shape: &[usize]) -> crate::Result<()> {
    let elems = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let bytes = elems.and_then(|n| n.checked_mul(size_of::<T>()));
    let too_big = |size: String| {
        crate::NnError::Config(format!(
            "{what} of shape {shape:?} need {size}, more memory than can be allocated"
        ))
    };
    match (elems, bytes) {
        (Some(n), Some(b)) => {
            let mut probe: Vec<T> = Vec::new();
            probe
                .try_reserve_exact(n)
                .map_err(|_| too_big(format!("{:.3e} bytes", b as f64)))
        }
        _ => Err(too_big("more than 2^64 bytes".into())),
    }
}
