//! # strata-tensor
//!
//! `Tensor<T>`: an n-dimensional array over f32 or f64 with shared, reference-counted
//! storage, row-major strides and cheap views (permute, transpose, slice, select,
//! broadcast, and reshape of contiguous tensors). Shape problems are returned as
//! [`ShapeError`] values rather than panics.
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
