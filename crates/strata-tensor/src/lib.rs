//! # strata-tensor
//!
//! `Tensor<T>`: an n-dimensional array over f32 or f64 with shared, reference-counted
//! storage, row-major strides and cheap views (permute, transpose, slice, select,
//! broadcast, and reshape of contiguous tensors). Shape problems are returned as
//! [`ShapeError`] values rather than panics.
//!
//! Building a tensor, reshaping, permuting and slicing it:
//!
//! ```rust
//! use strata_tensor::{ShapeError, Tensor};
//!
//! # fn main() -> Result<(), ShapeError> {
//! // A 2×3×4 tensor holding 0, 1, …, 23 in row-major order.
//! let t = Tensor::<f32>::from_vec((0..24).map(|v| v as f32).collect(), &[2, 3, 4])?;
//! assert_eq!((t.rank(), t.numel()), (3, 24));
//!
//! let m = t.reshape(&[6, 4])?; // contiguous, so a view with new strides
//! assert_eq!(m.strides(), &[4, 1]);
//!
//! let p = t.permute(&[2, 0, 1])?; // axis i of p is axis perm[i] of t; no copy
//! assert_eq!(p.shape(), &[4, 2, 3]);
//! assert!(!p.is_contiguous());
//! assert_eq!(p.get(&[1, 0, 2])?, t.get(&[0, 2, 1])?);
//!
//! let s = t.slice(2, 1, 3)?; // indices 1..3 of the last axis: [2, 3, 2], a view
//! assert_eq!(s.select(0, 1)?.select(0, 0)?.to_vec(), vec![13.0, 14.0]);
//!
//! // Reshaping a non-contiguous view copies; a wrong element count is an error value.
//! assert_eq!(p.reshape(&[24])?.to_vec()[..3], [0.0, 4.0, 8.0]);
//! assert!(matches!(t.reshape(&[5, 5]), Err(ShapeError::ElementCount { .. })));
//! # Ok(()) }
//! ```
//!
//! ```
//! use strata_tensor::Tensor;
//!
//! let t = Tensor::<f32>::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3])?;
//! let tt = t.transpose(0, 1)?; // a view: no copy
//! assert_eq!(tt.shape(), &[3, 2]);
//! assert_eq!(tt.to_vec(), vec![0., 3., 1., 4., 2., 5.]);
//! let col = t.slice(1, 1, 2)?; // the middle column, still a view
//! assert_eq!(col.to_vec(), vec![1., 4.]);
//! let both = Tensor::concat(&[&t, &t], 0)?;
//! assert_eq!(both.shape(), &[4, 3]);
//! assert!(t.reshape(&[4]).is_err()); // 6 elements do not fill [4]
//! # Ok::<(), strata_tensor::ShapeError>(())
//! ```

#![warn(missing_docs)]

pub mod buffers;
mod element;
mod error;
mod fmt;
mod tensor;

pub use element::Element;
pub use error::{Result, ShapeError};
pub use tensor::{broadcast_shapes, contiguous_strides, numel, Tensor};
