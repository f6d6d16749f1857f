//! Padding a stack of slices (planes) for convolution, and its adjoint.
//!
//! Section 12.3.1: near the edge a unit's window leaves the image, so "you could
//! pad the image (either with constants, or by reflecting it, or by attaching
//! copies of the columns/rows at the edge)". Each padded position reads one
//! source pixel (or a constant); the backward pass (the adjoint) adds every
//! padded position's gradient into that source pixel, so a pixel copied into
//! several border positions receives the sum of their gradients.

use rayon::prelude::*;
use strata_tensor::Element;

/// How the border of a slice is filled.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Border {
    /// Zeros (the chapter's "reported value is zero"). Convolution handles this
    /// one without materialising a padded copy.
    #[default]
    Zero,
    /// A constant value.
    Constant(f64),
    /// Mirror the slice about its edge pixel, which is not repeated:
    /// `… x₂ x₁ | x₀ x₁ x₂ …`.
    Reflect,
    /// Copies of the row/column at the edge: `… x₀ x₀ | x₀ x₁ …`.
    Replicate,
}

/// Amounts of padding on each side of a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pad2d {
    /// Rows added above.
    pub top: usize,
    /// Rows added below.
    pub bottom: usize,
    /// Columns added on the left.
    pub left: usize,
    /// Columns added on the right.
    pub right: usize,
}

impl Pad2d {
    /// The same padding `p` on all four sides.
    pub fn uniform(p: usize) -> Self {
        Self {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// Whether no padding is added.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// Padded height and width of an `h × w` slice.
    pub fn padded(&self, h: usize, w: usize) -> (usize, usize) {
        (h + self.top + self.bottom, w + self.left + self.right)
    }
}

/// For each padded position along an axis of length `len`, the source index
/// it copies (`None`: the constant).
fn index_map(len: usize, before: usize, after: usize, border: Border) -> Vec<Option<usize>> {
    (0..before + len + after)
        .map(|p| {
            let i = p as isize - before as isize;
            if (0..len as isize).contains(&i) {
                return Some(i as usize);
            }
            match border {
                Border::Zero | Border::Constant(_) => None,
                Border::Replicate => Some(i.clamp(0, len as isize - 1) as usize),
                Border::Reflect if len == 1 => Some(0),
                Border::Reflect => {
                    // Reflection is periodic with period 2(len − 1); this also
                    // covers padding wider than the slice.
                    let period = 2 * (len as isize - 1);
                    let m = i.rem_euclid(period);
                    Some(if m < len as isize { m } else { period - m } as usize)
                }
            }
        })
        .collect()
}

/// Pads `planes` slices of `h × w` (`x`, contiguous) into `out`
/// (`planes × h' × w'`, with `h' × w'` from [`Pad2d::padded`]).
pub fn pad2d<T: Element>(
    x: &[T],
    planes: usize,
    h: usize,
    w: usize,
    pad: Pad2d,
    border: Border,
    out: &mut [T],
) {
    let (ph, pw) = pad.padded(h, w);
    assert_eq!(x.len(), planes * h * w, "pad2d: input length");
    assert_eq!(out.len(), planes * ph * pw, "pad2d: output length");
    if h == 0 || w == 0 || out.is_empty() {
        return;
    }
    let (rows, cols) = (
        index_map(h, pad.top, pad.bottom, border),
        index_map(w, pad.left, pad.right, border),
    );
    let fill = match border {
        Border::Constant(c) => T::of(c),
        _ => T::zero(),
    };
    let work = |(src, dst): (&[T], &mut [T])| {
        for (r, drow) in rows.iter().zip(dst.chunks_exact_mut(pw)) {
            match r {
                None => drow.fill(fill),
                Some(r) => {
                    let srow = &src[r * w..(r + 1) * w];
                    for (d, c) in drow.iter_mut().zip(&cols) {
                        *d = c.map_or(fill, |c| srow[c]);
                    }
                }
            }
        }
    };
    crate::parallel::install(|| {
        x.par_chunks_exact(h * w)
            .zip(out.par_chunks_exact_mut(ph * pw))
            .for_each(work)
    });
}

/// The adjoint of [`pad2d`]: `dx[source] = Σ dy[positions that copy source]`.
/// `dx` is overwritten.
pub fn pad2d_backward<T: Element>(
    dy: &[T],
    planes: usize,
    h: usize,
    w: usize,
    pad: Pad2d,
    border: Border,
    dx: &mut [T],
) {
    let (ph, pw) = pad.padded(h, w);
    assert_eq!(dx.len(), planes * h * w, "pad2d_backward: input length");
    assert_eq!(dy.len(), planes * ph * pw, "pad2d_backward: output length");
    dx.fill(T::zero());
    if h == 0 || w == 0 || dy.is_empty() {
        return;
    }
    let (rows, cols) = (
        index_map(h, pad.top, pad.bottom, border),
        index_map(w, pad.left, pad.right, border),
    );
    let work = |(g, d): (&[T], &mut [T])| {
        for (r, grow) in rows.iter().zip(g.chunks_exact(pw)) {
            let Some(r) = r else { continue };
            let drow = &mut d[r * w..(r + 1) * w];
            for (&gv, c) in grow.iter().zip(&cols) {
                if let Some(c) = c {
                    drow[*c] = drow[*c] + gv;
                }
            }
        }
    };
    crate::parallel::install(|| {
        dy.par_chunks_exact(ph * pw)
            .zip(dx.par_chunks_exact_mut(h * w))
            .for_each(work)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borders_along_a_row() {
        let x = [1.0f64, 2., 3.];
        let pad = Pad2d {
            top: 0,
            bottom: 0,
            left: 2,
            right: 2,
        };
        let mut out = [0.0; 7];
        pad2d(&x, 1, 1, 3, pad, Border::Reflect, &mut out);
        assert_eq!(out, [3., 2., 1., 2., 3., 2., 1.]);
        pad2d(&x, 1, 1, 3, pad, Border::Replicate, &mut out);
        assert_eq!(out, [1., 1., 1., 2., 3., 3., 3.]);
        pad2d(&x, 1, 1, 3, pad, Border::Constant(9.0), &mut out);
        assert_eq!(out, [9., 9., 1., 2., 3., 9., 9.]);
        let mut dx = [0.0; 3];
        pad2d_backward(&[1.0; 7], 1, 1, 3, pad, Border::Replicate, &mut dx);
        assert_eq!(dx, [3., 1., 3.]);
        pad2d_backward(&[1.0; 7], 1, 1, 3, pad, Border::Reflect, &mut dx);
        assert_eq!(dx, [2., 3., 2.]);
    }
}
