//! The convolution by its definition, one multiply-add at a time
//! ([`conv2d_naive`]): slow and plainly right, the reference every fast path
//! is tested against.

use super::{check_lens, ConvGeometry};
use crate::gemm::GemmScalar;

/// The direct definition, one multiply-add at a time: the reference the fast
/// paths are tested against.
pub fn conv2d_naive<T: GemmScalar>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
) {
    check_lens(g, "conv2d_naive", x.len(), w.len(), y.len());
    let (oh, ow) = (g.out_h(), g.out_w());
    for n in 0..g.batch {
        for o in 0..g.c_out {
            for u in 0..oh {
                for v in 0..ow {
                    let mut s = bias.map_or(T::zero(), |b| b[o]);
                    for c in 0..g.c_in {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let iy = (u * g.stride_h + i) as isize - g.pad_top as isize;
                                let ix = (v * g.stride_w + j) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv =
                                    x[((n * g.c_in + c) * g.h + iy as usize) * g.w + ix as usize];
                                s = s + xv * w[((o * g.c_in + c) * g.kh + i) * g.kw + j];
                            }
                        }
                    }
                    y[((n * g.c_out + o) * oh + u) * ow + v] = s;
                }
            }
        }
    }
}
