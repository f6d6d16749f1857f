//! The tensor type: shared contiguous storage seen through a shape and strides.

use crate::error::{Result, ShapeError};
use crate::Element;
use std::sync::Arc;

/// An n-dimensional array of `T`, row-major by default.
///
/// Storage is a reference-counted buffer, so [`Tensor::clone`], [`Tensor::permute`],
/// [`Tensor::slice`], [`Tensor::broadcast_to`] and (for contiguous tensors)
/// [`Tensor::reshape`] are views that copy no elements. Writing through
/// [`Tensor::data_mut`] first makes the storage unique and contiguous
/// (copy-on-write), so views never observe each other's writes.
#[derive(Clone)]
pub struct Tensor<T: Element> {
    data: Arc<Buf<T>>,
    offset: usize,
    shape: Vec<usize>,
    strides: Vec<usize>,
}

/// A tensor's storage: the elements, handed to [`crate::buffers`] for reuse
/// when the last view of them is dropped, and a stamp that changes whenever
/// they may have changed ([`Tensor::version`]).
struct Buf<T: Element>(Vec<T>, u64);

/// Source of storage stamps: each new storage, and each write access, takes
/// the next number.
static STAMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_stamp() -> u64 {
    STAMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl<T: Element> Buf<T> {
    fn new(v: Vec<T>) -> Self {
        Buf(v, next_stamp())
    }
}

impl<T: Element> Drop for Buf<T> {
    fn drop(&mut self) {
        crate::buffers::give(std::mem::take(&mut self.0));
    }
}

impl<T: Element> std::ops::Deref for Buf<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Element> std::ops::DerefMut for Buf<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

/// Row-major (C order) strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d;
    }
    strides
}

/// Number of elements of `shape` (1 for a scalar shape `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl<T: Element> Tensor<T> {
    /// Wraps `data` as a tensor of `shape`, failing if the element count differs.
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Result<Self> {
        let expected = numel(shape);
        if data.len() != expected {
            return Err(ShapeError::ElementCount {
                context: "from_vec",
                shape: shape.to_vec(),
                expected,
                got: data.len(),
            });
        }
        Ok(Self {
            data: Arc::new(Buf::new(data)),
            offset: 0,
            strides: contiguous_strides(shape),
            shape: shape.to_vec(),
        })
    }

    /// Copies `data` into a new tensor of `shape`.
    pub fn from_slice(data: &[T], shape: &[usize]) -> Result<Self> {
        Self::from_vec(data.to_vec(), shape)
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: T) -> Self {
        Self::from_vec(vec![value; numel(shape)], shape).expect("length matches by construction")
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, T::zero())
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, T::one())
    }

    /// A rank-0 tensor holding `value`.
    pub fn scalar(value: T) -> Self {
        Self::full(&[], value)
    }

    /// The extent of each axis.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Element step of each axis in the underlying storage (0 for broadcast axes).
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Extent of `axis`, or an error naming the axis.
    pub fn dim(&self, axis: usize) -> Result<usize> {
        self.shape
            .get(axis)
            .copied()
            .ok_or(ShapeError::AxisOutOfRange {
                context: "dim",
                axis,
                rank: self.rank(),
            })
    }

    /// Whether the elements are laid out row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != acc {
                return false;
            }
            acc *= d;
        }
        true
    }

    /// The elements as one row-major slice, if the tensor is contiguous.
    pub fn as_slice(&self) -> Option<&[T]> {
        self.is_contiguous()
            .then(|| &self.data[self.offset..self.offset + self.numel()])
    }

    /// Row-major elements; borrows when contiguous, copies otherwise.
    pub fn to_contiguous_slice(&self) -> std::borrow::Cow<'_, [T]> {
        match self.as_slice() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(self.to_vec()),
        }
    }

    /// A contiguous tensor with the same elements (a cheap clone if already contiguous).
    pub fn contiguous(&self) -> Self {
        if self.is_contiguous() {
            self.clone()
        } else {
            Self::from_vec(self.to_vec(), &self.shape).expect("same element count")
        }
    }

    /// The elements in row-major order, copied into a new `Vec`.
    pub fn to_vec(&self) -> Vec<T> {
        if let Some(s) = self.as_slice() {
            return s.to_vec();
        }
        let mut out = Vec::with_capacity(self.numel());
        self.for_each_offset(|o| out.push(self.data[o]));
        out
    }

    /// The elements in row-major order, without copying when this tensor owns
    /// its contiguous storage alone.
    pub fn into_vec(self) -> Vec<T> {
        if self.offset == 0 && self.is_contiguous() && self.data.len() == self.numel() {
            match Arc::try_unwrap(self.data) {
                Ok(mut b) => std::mem::take(&mut b.0),
                Err(a) => a.0.clone(),
            }
        } else {
            self.to_vec()
        }
    }

    /// A number identifying this tensor's storage and its contents: equal
    /// for two tensors only if they view the same storage and nothing was
    /// written to it in between (each new storage and each
    /// [`Tensor::data_mut`] takes a fresh number). Caches of values derived
    /// from a tensor key on it together with the shape.
    pub fn version(&self) -> u64 {
        self.data.1
    }

    /// Mutable row-major elements. Makes the storage unique and contiguous
    /// first (copy-on-write), so other views keep their values.
    pub fn data_mut(&mut self) -> &mut [T] {
        let unique_whole = self.offset == 0
            && self.is_contiguous()
            && self.data.len() == self.numel()
            && Arc::get_mut(&mut self.data).is_some();
        if !unique_whole {
            *self = Self::from_vec(self.to_vec(), &self.shape.clone()).expect("same count");
        }
        let buf = Arc::get_mut(&mut self.data).expect("unique after copy");
        // The caller may write: whatever was derived from the old contents
        // (e.g. a packed copy of a weight matrix) is stale from now on.
        buf.1 = next_stamp();
        buf.0.as_mut_slice()
    }

    /// The element at a multi-index.
    pub fn get(&self, index: &[usize]) -> Result<T> {
        if index.len() != self.rank() || index.iter().zip(&self.shape).any(|(&i, &d)| i >= d) {
            return Err(ShapeError::IndexOutOfBounds {
                index: index.to_vec(),
                shape: self.shape.clone(),
            });
        }
        let off: usize = index.iter().zip(&self.strides).map(|(i, s)| i * s).sum();
        Ok(self.data[self.offset + off])
    }

    /// The single element of a tensor with one element (any rank).
    pub fn item(&self) -> Result<T> {
        if self.numel() != 1 {
            return Err(ShapeError::ElementCount {
                context: "item",
                shape: self.shape.clone(),
                expected: 1,
                got: self.numel(),
            });
        }
        Ok(self.data[self.offset])
    }

    /// Calls `f` with the storage offset of every element, in row-major order.
    fn for_each_offset(&self, mut f: impl FnMut(usize)) {
        let n = self.numel();
        if n == 0 {
            return;
        }
        let rank = self.rank();
        if rank == 0 {
            f(self.offset);
            return;
        }
        let mut idx = vec![0usize; rank];
        let mut off = self.offset;
        let last = rank - 1;
        let (inner_len, inner_stride) = (self.shape[last], self.strides[last]);
        loop {
            for i in 0..inner_len {
                f(off + i * inner_stride);
            }
            // Odometer step over the outer axes.
            let mut ax = last;
            loop {
                if ax == 0 {
                    return;
                }
                ax -= 1;
                idx[ax] += 1;
                off += self.strides[ax];
                if idx[ax] < self.shape[ax] {
                    break;
                }
                off -= self.strides[ax] * self.shape[ax];
                idx[ax] = 0;
            }
        }
    }

    /// Applies `f` to every element, giving a new contiguous tensor.
    pub fn map(&self, mut f: impl FnMut(T) -> T) -> Self {
        let mut out = Vec::with_capacity(self.numel());
        self.for_each_offset(|o| out.push(f(self.data[o])));
        Self::from_vec(out, &self.shape).expect("same count")
    }

    /// Same elements under a new shape with the same element count. A view when
    /// the tensor is contiguous, a copy otherwise.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        if numel(shape) != self.numel() {
            return Err(ShapeError::ElementCount {
                context: "reshape",
                shape: shape.to_vec(),
                expected: numel(shape),
                got: self.numel(),
            });
        }
        let base = self.contiguous();
        Ok(Self {
            data: base.data,
            offset: base.offset,
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
        })
    }

    /// Collapses every axis from `start` on into one (e.g. NCHW → N×(CHW) with `start = 1`).
    pub fn flatten_from(&self, start: usize) -> Result<Self> {
        if start > self.rank() {
            return Err(ShapeError::AxisOutOfRange {
                context: "flatten_from",
                axis: start,
                rank: self.rank(),
            });
        }
        let mut shape = self.shape[..start].to_vec();
        shape.push(numel(&self.shape[start..]));
        self.reshape(&shape)
    }

    /// Reorders the axes: axis `i` of the result is axis `perm[i]` of `self`. A view.
    pub fn permute(&self, perm: &[usize]) -> Result<Self> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        let valid = perm.len() == rank
            && perm
                .iter()
                .all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
        if !valid {
            return Err(ShapeError::BadPermutation {
                perm: perm.to_vec(),
                rank,
            });
        }
        Ok(Self {
            data: self.data.clone(),
            offset: self.offset,
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
        })
    }

    /// Swaps two axes. A view.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Self> {
        let rank = self.rank();
        for axis in [a, b] {
            if axis >= rank {
                return Err(ShapeError::AxisOutOfRange {
                    context: "transpose",
                    axis,
                    rank,
                });
            }
        }
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// The elements with index in `start..end` along `axis`. A view.
    pub fn slice(&self, axis: usize, start: usize, end: usize) -> Result<Self> {
        let len = self.dim(axis)?;
        if start > end || end > len {
            return Err(ShapeError::RangeOutOfBounds {
                context: "slice",
                axis,
                start,
                end,
                len,
            });
        }
        let mut shape = self.shape.clone();
        shape[axis] = end - start;
        Ok(Self {
            data: self.data.clone(),
            offset: if end > start {
                self.offset + start * self.strides[axis]
            } else {
                self.offset
            },
            shape,
            strides: self.strides.clone(),
        })
    }

    /// The sub-tensor at `index` along `axis`, with that axis removed. A view.
    pub fn select(&self, axis: usize, index: usize) -> Result<Self> {
        let mut t = self.slice(axis, index, index + 1)?;
        t.shape.remove(axis);
        t.strides.remove(axis);
        Ok(t)
    }

    /// Joins tensors along an existing axis; all other extents must agree.
    pub fn concat(tensors: &[&Self], axis: usize) -> Result<Self> {
        let first = tensors
            .first()
            .ok_or(ShapeError::Empty { context: "concat" })?;
        let rank = first.rank();
        if axis >= rank {
            return Err(ShapeError::AxisOutOfRange {
                context: "concat",
                axis,
                rank,
            });
        }
        let mut shape = first.shape.clone();
        shape[axis] = 0;
        for t in tensors {
            let compatible = t.rank() == rank
                && t.shape
                    .iter()
                    .zip(&first.shape)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !compatible {
                return Err(ShapeError::Mismatch {
                    context: "concat",
                    left: first.shape.clone(),
                    right: t.shape.clone(),
                });
            }
            shape[axis] += t.shape[axis];
        }
        // Row-major: the result is `outer` runs, each the concatenation of every
        // input's contiguous block of `shape[axis..]`.
        let outer = numel(&shape[..axis]);
        let parts: Vec<Vec<T>> = tensors.iter().map(|t| t.to_vec()).collect();
        let mut out = Vec::with_capacity(numel(&shape));
        for o in 0..outer {
            for (t, p) in tensors.iter().zip(&parts) {
                let block = numel(&t.shape[axis..]);
                out.extend_from_slice(&p[o * block..(o + 1) * block]);
            }
        }
        Self::from_vec(out, &shape)
    }

    /// Joins equally shaped tensors along a new axis inserted at `axis`.
    pub fn stack(tensors: &[&Self], axis: usize) -> Result<Self> {
        let first = tensors
            .first()
            .ok_or(ShapeError::Empty { context: "stack" })?;
        if axis > first.rank() {
            return Err(ShapeError::AxisOutOfRange {
                context: "stack",
                axis,
                rank: first.rank() + 1,
            });
        }
        let mut expanded = Vec::with_capacity(tensors.len());
        for t in tensors {
            if t.shape != first.shape {
                return Err(ShapeError::Mismatch {
                    context: "stack",
                    left: first.shape.clone(),
                    right: t.shape.clone(),
                });
            }
            let mut shape = t.shape.clone();
            shape.insert(axis, 1);
            expanded.push(t.reshape(&shape)?);
        }
        let refs: Vec<&Self> = expanded.iter().collect();
        Self::concat(&refs, axis)
    }

    /// A view of this tensor repeated to `shape` by NumPy broadcasting rules:
    /// trailing axes align, an axis of extent 1 stretches (stride 0).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        let mismatch = || ShapeError::Mismatch {
            context: "broadcast_to",
            left: self.shape.clone(),
            right: shape.to_vec(),
        };
        if shape.len() < self.rank() {
            return Err(mismatch());
        }
        let lead = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for (i, &d) in shape.iter().enumerate().skip(lead) {
            let (own, stride) = (self.shape[i - lead], self.strides[i - lead]);
            strides[i] = match own {
                _ if own == d => stride,
                1 => 0,
                _ => return Err(mismatch()),
            };
        }
        Ok(Self {
            data: self.data.clone(),
            offset: self.offset,
            shape: shape.to_vec(),
            strides,
        })
    }

    /// Whether every element of both tensors is within `tol` (absolute) of the other.
    pub fn all_close(&self, other: &Self, tol: f64) -> bool {
        self.shape == other.shape
            && self
                .to_vec()
                .iter()
                .zip(other.to_vec())
                .all(|(a, b)| (a.as_f64() - b.as_f64()).abs() <= tol)
    }
}

/// The shape two shapes broadcast to (NumPy rules), or an error.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            _ if da == db => da,
            (1, d) | (d, 1) => d,
            _ => {
                return Err(ShapeError::Mismatch {
                    context: "broadcast",
                    left: a.to_vec(),
                    right: b.to_vec(),
                })
            }
        };
    }
    Ok(out)
}

impl<T: Element> PartialEq for Tensor<T> {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.to_vec() == other.to_vec()
    }
}
