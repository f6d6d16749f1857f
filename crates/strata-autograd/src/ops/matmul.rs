//! Matrix product `C = op(A)·op(B)` of 2-D tensors.
//!
//! Backward (for `C = A·B`): `∂E/∂A = (∂E/∂C)·Bᵀ`, `∂E/∂B = Aᵀ·(∂E/∂C)`; the
//! transposed cases follow by transposing those products, and every case is
//! one GEMM with the right flags, so no transpose is ever materialised.

use crate::error::{shape_err, Result};
use crate::ops::tensor;
use crate::{Backward, Real, Tape, Var};
use strata_kernels::gemm::{gemm, Trans};
use strata_tensor::{buffers, Tensor};

fn flip(t: Trans) -> Trans {
    match t {
        Trans::No => Trans::Yes,
        Trans::Yes => Trans::No,
    }
}

fn op_dims(shape: &[usize], t: Trans) -> (usize, usize) {
    match t {
        Trans::No => (shape[0], shape[1]),
        Trans::Yes => (shape[1], shape[0]),
    }
}

struct MatMulBackward {
    ta: Trans,
    tb: Trans,
}

impl<T: Real> Backward<T> for MatMulBackward {
    fn backward(
        &self,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        grad: &Tensor<T>,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let (a, b) = (inputs[0], inputs[1]);
        let (m, k) = op_dims(a.shape(), self.ta);
        let n = grad.shape()[1];
        let (ad, bd, gd) = (
            a.to_contiguous_slice(),
            b.to_contiguous_slice(),
            grad.to_contiguous_slice(),
        );
        let (lda, ldb) = (a.shape()[1], b.shape()[1]);
        let da = needs[0].then(|| {
            let mut da = buffers::take(a.numel());
            match self.ta {
                // dA (m×k) = dC (m×n) · op(B)ᵀ (n×k)
                Trans::No => gemm(
                    Trans::No,
                    flip(self.tb),
                    m,
                    k,
                    n,
                    T::one(),
                    &gd,
                    n,
                    &bd,
                    ldb,
                    T::zero(),
                    &mut da,
                    k,
                ),
                // dA (k×m) = op(B) (k×n) · dCᵀ (n×m)
                Trans::Yes => gemm(
                    self.tb,
                    Trans::Yes,
                    k,
                    m,
                    n,
                    T::one(),
                    &bd,
                    ldb,
                    &gd,
                    n,
                    T::zero(),
                    &mut da,
                    m,
                ),
            }
            tensor(da, a.shape())
        });
        let db = needs[1].then(|| {
            let mut db = buffers::take(b.numel());
            match self.tb {
                // dB (k×n) = op(A)ᵀ (k×m) · dC (m×n)
                Trans::No => gemm(
                    flip(self.ta),
                    Trans::No,
                    k,
                    n,
                    m,
                    T::one(),
                    &ad,
                    lda,
                    &gd,
                    n,
                    T::zero(),
                    &mut db,
                    n,
                ),
                // dB (n×k) = dCᵀ (n×m) · op(A) (m×k)
                Trans::Yes => gemm(
                    Trans::Yes,
                    self.ta,
                    n,
                    k,
                    m,
                    T::one(),
                    &gd,
                    n,
                    &ad,
                    lda,
                    T::zero(),
                    &mut db,
                    k,
                ),
            }
            tensor(db, b.shape())
        });
        Ok(vec![da, db])
    }
}

impl<T: Real> Tape<T> {
    /// `op(a)·op(b)` for 2-D `a`, `b`, where `op` transposes when the flag is set.
    pub fn matmul(&mut self, a: Var, b: Var, ta: Trans, tb: Trans) -> Result<Var> {
        let (av, bv) = (self.value(a)?, self.value(b)?);
        if av.rank() != 2 || bv.rank() != 2 {
            return Err(shape_err(
                "matmul",
                "both operands must be matrices",
                &[av.shape(), bv.shape()],
            ));
        }
        let (m, k) = op_dims(av.shape(), ta);
        let (k2, n) = op_dims(bv.shape(), tb);
        if k != k2 {
            return Err(shape_err(
                "matmul",
                format!("inner dimensions differ ({k} vs {k2}) after transposition flags {ta:?}, {tb:?}"),
                &[av.shape(), bv.shape()],
            ));
        }
        let mut c = buffers::take(m * n);
        let (ad, bd) = (av.to_contiguous_slice(), bv.to_contiguous_slice());
        gemm(
            ta,
            tb,
            m,
            n,
            k,
            T::one(),
            &ad,
            av.shape()[1],
            &bd,
            bv.shape()[1],
            T::zero(),
            &mut c,
            n,
        );
        let out = tensor(c, &[m, n]);
        self.push_op(&[a, b], out, || Box::new(MatMulBackward { ta, tb }))
    }
}
