//! # strata-kernels
//!
//! Every hot loop of strata, over plain slices and shapes (no autodiff here):
//! GEMM with an AVX-512 micro-kernel and a portable fallback, elementwise
//! kernels, reductions and numerically stable softmax. Parallel loops run in one
//! rayon pool whose size [`parallel::set_num_threads`] (or `RAYON_NUM_THREADS`)
//! controls.
//!
//! ```
//! use strata_kernels::gemm::{gemm, Trans};
//!
//! // C (2×2) = A (2×3) · B (3×2)
//! let a = [1.0f32, 2., 3., 4., 5., 6.];
//! let b = [1.0f32, 0., 0., 1., 1., 1.];
//! let mut c = [0.0f32; 4];
//! gemm(Trans::No, Trans::No, 2, 2, 3, 1.0, &a, 3, &b, 2, 0.0, &mut c, 2);
//! assert_eq!(c, [4., 5., 10., 11.]);
//! ```

#![warn(missing_docs)]

pub mod batchnorm;
pub mod conv;
pub mod elementwise;
pub mod gelu;
pub mod gemm;
pub mod image;
pub mod memory;
pub mod optim;
pub mod pad;
pub mod parallel;
pub mod pool;
pub mod reduce;
pub mod softmax;
pub mod winograd;

pub use strata_tensor::Element;
