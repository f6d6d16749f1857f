//! A Linear layer on an inference tape repacks its weights when the matmul
//! precision changes (its own binary: the precision is process-wide).

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::kernels::gemm::{bf16_available, set_matmul_precision, MatmulPrecision};
use strata_autograd::Tape;
use strata_nn::{Ctx, Linear, Mode, Module};
use strata_tensor::Tensor;

#[test]
fn inference_follows_the_matmul_precision() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let mut layer = Linear::<f32>::new(96, 40, &mut rng).unwrap();
    let x: Vec<f32> = (0..24 * 96).map(|i| (i as f32 * 0.173).sin()).collect();
    let mut eval = |layer: &mut Linear<f32>| {
        let mut tape = Tape::inference();
        let xi = tape.input(Tensor::from_vec(x.clone(), &[24, 96]).unwrap());
        let y = layer
            .forward(&mut tape, xi, &mut Ctx::new(Mode::Eval, &mut rng))
            .unwrap();
        tape.value(y).unwrap().to_vec()
    };
    let f32_out = eval(&mut layer);
    set_matmul_precision(MatmulPrecision::Bf16);
    let bf16_out = eval(&mut layer);
    let again = eval(&mut layer);
    set_matmul_precision(MatmulPrecision::F32);
    let back = eval(&mut layer);
    assert_eq!(back, f32_out, "back in f32: packed again in f32");
    assert_eq!(again, bf16_out, "the bf16 packing is reused");
    if bf16_available() {
        assert_ne!(bf16_out, f32_out, "bf16 rounds the operands");
        for (a, b) in bf16_out.iter().zip(&f32_out) {
            // 96 products of values ≤ 1 with inputs off by ≤ 2⁻⁸ relative.
            assert!((a - b).abs() <= 0.05, "{a} vs {b}");
        }
    } else {
        assert_eq!(bf16_out, f32_out, "no AMX: f32 throughout");
    }
}
