//! # strata-kernels
//!
//! Every hot loop of strata, over plain slices and shapes (no autodiff here):
//! GEMM with an AVX-512 micro-kernel and a portable fallback, elementwise
//! kernels, reductions and numerically stable softmax. Parallel loops run in one
//! rayon pool whose size [`parallel::set_num_threads`] (or `RAYON_NUM_THREADS`)
//! controls.
//!
//! A Linear layer's product through [`gemm::gemm`] (`C ← α·op(A)·op(B) + β·C` on
//! row-major slices), then with the bias and ReLU fused by [`gemm::gemm_bias_act`]:
//!
//! ```rust
//! use strata_kernels::gemm::{gemm, gemm_bias_act, Bias, Epilogue, Trans};
//!
//! // A Linear layer's product Y = X·Wᵀ: X is 2×3 (two samples), W is stored
//! // out × in (2×3), so op(B) = Wᵀ. m = 2, n = 2, k = 3; row-major leading
//! // dimensions lda = 3, ldb = 3 (W's rows), ldc = 2.
//! let x = [1.0f32, 2., 3., 4., 5., 6.];
//! let w = [1.0f32, 0., 0., 1., 1., 1.];
//! let mut y = [0.0f32; 4];
//! gemm(Trans::No, Trans::Yes, 2, 2, 3, 1.0, &x, 3, &w, 3, 0.0, &mut y, 2);
//! assert_eq!(y, [1., 6., 4., 15.]);
//!
//! // β = 1 accumulates: Y ← 0.5·X·Wᵀ + Y.
//! gemm(Trans::No, Trans::Yes, 2, 2, 3, 0.5, &x, 3, &w, 3, 1.0, &mut y, 2);
//! assert_eq!(y, [1.5, 9., 6., 22.5]);
//!
//! // The same product with a per-column bias and ReLU fused into the store.
//! let bias = [-2.0f32, -10.0];
//! let epilogue = Epilogue { bias: Bias::PerCol(&bias[..]), relu: true };
//! gemm_bias_act(Trans::No, Trans::Yes, 2, 2, 3, 1.0, &x, 3, &w, 3, 0.0, &mut y, 2, epilogue);
//! assert_eq!(y, [0., 0., 2., 5.]);
//! ```
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
mod isa;
pub mod memory;
pub mod optim;
pub mod pad;
pub mod parallel;
pub mod pool;
pub mod reduce;
pub mod softmax;

pub use conv::winograd;
pub use strata_tensor::Element;
