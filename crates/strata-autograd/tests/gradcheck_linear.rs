//! The fused linear op `F(x Wᵀ + b)`: gradients against central differences
//! in f64, values against the unfused `matmul` → `add_bias` → `relu` chain,
//! and the per-op profiler.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use strata_autograd::gradcheck::{check_gradients, GradCheckOptions};
use strata_autograd::{Profiler, Result, Tape, Var};
use strata_kernels::gemm::Trans;
use strata_tensor::Tensor;

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let n = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.random_range(-1.0..1.0)).collect(), shape).unwrap()
}

/// A scalar with a distinct upstream gradient for every output entry.
fn weighted_sum(tape: &mut Tape<f64>, y: Var, seed: u64) -> Result<Var> {
    let n: usize = tape.shape(y)?.iter().product();
    let w = tape.input(rand_tensor(&[n, 1], seed));
    let flat = tape.reshape(y, &[1, n])?;
    let s = tape.matmul(flat, w, Trans::No, Trans::No)?;
    tape.sum(s)
}

#[test]
fn linear_gradients_with_and_without_relu_and_bias() {
    // Shapes large enough to take the GEMM's packed, parallel path too.
    for (m, k, n) in [(3, 4, 5), (17, 33, 40), (64, 70, 90)] {
        for relu in [false, true] {
            for bias in [false, true] {
                let mut inputs = vec![
                    ("x", rand_tensor(&[m, k], 1)),
                    ("w", rand_tensor(&[n, k], 2)),
                ];
                if bias {
                    inputs.push(("b", rand_tensor(&[n], 3)));
                }
                let reports = check_gradients(
                    &inputs,
                    |t, v| {
                        let y = t.linear(v[0], v[1], v.get(2).copied(), relu)?;
                        weighted_sum(t, y, 4)
                    },
                    &GradCheckOptions::default(),
                )
                .unwrap();
                for r in reports {
                    assert!(r.checked > 0);
                    assert!(
                        r.max_rel_error < 1e-6,
                        "{m}×{k}×{n} relu={relu} bias={bias} {}: {:e}",
                        r.name,
                        r.max_rel_error
                    );
                }
            }
        }
    }
}

#[test]
fn linear_matches_unfused_chain() {
    let (x, w, b) = (
        rand_tensor(&[20, 30], 5),
        rand_tensor(&[25, 30], 6),
        rand_tensor(&[25], 7),
    );
    let mut t = Tape::<f64>::new();
    let (xv, wv, bv) = (t.leaf(x), t.leaf(w), t.leaf(b));
    let fused = t.linear(xv, wv, Some(bv), true).unwrap();
    let h = t.matmul(xv, wv, Trans::No, Trans::Yes).unwrap();
    let h = t.add_bias(h, bv).unwrap();
    let unfused = t.relu(h).unwrap();
    assert!(t
        .value(fused)
        .unwrap()
        .all_close(t.value(unfused).unwrap(), 1e-12));
}

#[test]
fn linear_rejects_bad_shapes() {
    let mut t = Tape::<f64>::new();
    let x = t.input(Tensor::zeros(&[2, 3]));
    let w = t.input(Tensor::zeros(&[4, 5]));
    assert!(t.linear(x, w, None, false).is_err());
    let w = t.input(Tensor::zeros(&[4, 3]));
    let b = t.input(Tensor::zeros(&[3]));
    assert!(t.linear(x, w, Some(b), false).is_err());
}

#[test]
fn profiler_files_time_under_op_names() {
    let p = Profiler::new();
    let mut t = Tape::<f64>::new().with_profiler(p.clone());
    let x = t.leaf(rand_tensor(&[4, 3], 1));
    let w = t.leaf(rand_tensor(&[2, 3], 2));
    let y = t.linear(x, w, None, true).unwrap();
    let l = t.sum(y).unwrap();
    t.backward(l).unwrap();
    let report = p.report();
    let names: Vec<&str> = report.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"linear") && names.contains(&"sum"),
        "{names:?}"
    );
    let linear = report.iter().find(|(n, _)| n == "linear").unwrap().1;
    assert_eq!(linear.calls, 1);
}

#[test]
fn linear_prepacked_matches_linear_and_rejects_mismatched_packs() {
    use strata_kernels::gemm::PackedB;
    let (x, w, b) = (
        rand_tensor(&[7, 11], 8),
        rand_tensor(&[9, 11], 9),
        rand_tensor(&[9], 10),
    );
    let packed = PackedB::new(Trans::Yes, 11, 9, &w.to_vec(), 11);
    let mut t = Tape::<f64>::new();
    let (xv, wv, bv) = (t.leaf(x), t.leaf(w), t.leaf(b));
    let plain = t.linear(xv, wv, Some(bv), true).unwrap();
    let pre = t.linear_prepacked(xv, wv, &packed, Some(bv), true).unwrap();
    assert_eq!(
        t.value(plain).unwrap().to_vec(),
        t.value(pre).unwrap().to_vec()
    );
    // The gradients (which come from W, not the pack) are the same too.
    let (lp, lq) = (t.sum(plain).unwrap(), t.sum(pre).unwrap());
    let (gp, gq) = (t.backward(lp).unwrap(), t.backward(lq).unwrap());
    for v in [xv, wv, bv] {
        assert_eq!(gp.get(v).unwrap().to_vec(), gq.get(v).unwrap().to_vec());
    }
    // A pack of other weights is an error that says which sizes disagree.
    let other = PackedB::new(Trans::Yes, 11, 8, &vec![0.0f64; 88], 11);
    let err = t
        .linear_prepacked(xv, wv, &other, Some(bv), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("packed weights are 11×8, W gives 11×9"),
        "{err}"
    );
}
