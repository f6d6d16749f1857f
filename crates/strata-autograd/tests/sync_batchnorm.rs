//! Synchronised batch norm: alone it is the ordinary op (value and f64
//! gradients); split over two threads that add their sums, it gives the
//! whole minibatch's output and, weighted as a data-parallel step weights
//! it, the whole minibatch's gradients.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::{Arc, Barrier, Mutex};
use strata_autograd::gradcheck::{check_gradients, GradCheckOptions};
use strata_autograd::kernels::gemm::Trans;
use strata_autograd::ops::batchnorm::{AloneSum, BatchSum};
use strata_autograd::{Result, Tape, Var};
use strata_tensor::Tensor;

fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// `scale · Σ w·y`: with `scale = 1/n` the mean over the items of a
/// per-item loss, as a data-parallel rank computes its loss.
fn weighted(tape: &mut Tape<f64>, y: Var, w: &[f64], scale: f64) -> Result<Var> {
    let n = w.len();
    let wv = tape.input(Tensor::from_vec(w.to_vec(), &[n, 1]).unwrap());
    let flat = tape.reshape(y, &[1, n])?;
    let s = tape.matmul(flat, wv, Trans::No, Trans::No)?;
    let s = tape.sum(s)?;
    tape.scale(s, scale)
}

#[test]
fn alone_it_is_batch_norm_and_its_gradients_check() {
    let sum: Arc<dyn BatchSum> = Arc::new(AloneSum);
    for (shape, relu) in [(vec![5, 4], false), (vec![3, 2, 3, 4], true)] {
        let (n, c) = (shape.iter().product::<usize>(), shape[1]);
        let x = Tensor::from_vec(
            rand_vec(n, 1).iter().map(|v| 3.0 * v + 1.5).collect(),
            &shape,
        )
        .unwrap();
        let gamma = Tensor::from_vec(rand_vec(c, 2), &[c]).unwrap();
        let beta = Tensor::from_vec(rand_vec(c, 3), &[c]).unwrap();
        let w = rand_vec(n, 4);
        // The same value and statistics as the unsynchronised op.
        let mut t = Tape::<f64>::new();
        let (xv, gv, bv) = (
            t.input(x.clone()),
            t.input(gamma.clone()),
            t.input(beta.clone()),
        );
        let (a, sa) = t.batch_norm_train_act(xv, gv, bv, 1e-5, relu).unwrap();
        let (b, sb) = t
            .batch_norm_train_synced(xv, gv, bv, 1e-5, relu, &sum)
            .unwrap();
        let (va, vb) = (t.value(a).unwrap().to_vec(), t.value(b).unwrap().to_vec());
        for (p, q) in va.iter().zip(&vb) {
            assert!((p - q).abs() < 1e-12, "{p} vs {q}");
        }
        assert_eq!(sa.count, sb.count);
        for (p, q) in sa.var.iter().zip(&sb.var) {
            assert!((p - q).abs() < 1e-12);
        }
        // Gradients against central differences.
        let opts = GradCheckOptions {
            max_entries: 120,
            ..GradCheckOptions::default()
        };
        let inputs = [("x", x), ("gamma", gamma), ("beta", beta)];
        let reports = check_gradients(
            &inputs,
            |t, v| {
                let (y, _) = t.batch_norm_train_synced(v[0], v[1], v[2], 1e-5, relu, &sum)?;
                weighted(t, y, &w, 1.0)
            },
            &opts,
        )
        .unwrap();
        for r in reports {
            assert!(r.checked > 0);
            assert!(
                r.max_rel_error < 1e-6,
                "{} (relu {relu}): relative error {:e}",
                r.name,
                r.max_rel_error
            );
        }
    }
}

/// An all-reduce sum over `ranks` threads.
struct ThreadSum {
    acc: Mutex<Vec<f64>>,
    barrier: Barrier,
}

impl BatchSum for ThreadSum {
    fn sum(&self, values: &mut [f64]) -> std::result::Result<(), String> {
        {
            let mut acc = self.acc.lock().unwrap();
            acc.resize(values.len(), 0.0);
            for (a, v) in acc.iter_mut().zip(values.iter()) {
                *a += v;
            }
        }
        self.barrier.wait();
        values.copy_from_slice(&self.acc.lock().unwrap());
        if self.barrier.wait().is_leader() {
            self.acc.lock().unwrap().clear();
        }
        self.barrier.wait();
        Ok(())
    }
}

#[test]
fn split_over_two_threads_it_matches_the_whole_minibatch() {
    // 6 items split 2 + 4: the weights c_r/G matter.
    let (items, c, px) = (6usize, 3usize, 4usize);
    let per_item = c * px;
    let x: Vec<f64> = rand_vec(items * per_item, 5)
        .iter()
        .map(|v| 2.0 * v - 0.7)
        .collect();
    let w = rand_vec(items * per_item, 6);
    let gamma = rand_vec(c, 7);
    let beta = rand_vec(c, 8);
    // One rank's (output, dx, dγ, dβ) for items lo..hi, loss the mean over
    // its own items.
    let run = |lo: usize, hi: usize, sum: Arc<dyn BatchSum>| {
        let n = hi - lo;
        let mut t = Tape::<f64>::new();
        let xv = t.leaf(
            Tensor::from_vec(x[lo * per_item..hi * per_item].to_vec(), &[n, c, 2, 2]).unwrap(),
        );
        let gv = t.leaf(Tensor::from_vec(gamma.clone(), &[c]).unwrap());
        let bv = t.leaf(Tensor::from_vec(beta.clone(), &[c]).unwrap());
        let (y, stats) = t
            .batch_norm_train_synced(xv, gv, bv, 1e-5, true, &sum)
            .unwrap();
        let loss = weighted(&mut t, y, &w[lo * per_item..hi * per_item], 1.0 / n as f64).unwrap();
        let g = t.backward(loss).unwrap();
        let get = |v: Var| g.get(v).unwrap().to_vec();
        (
            t.value(y).unwrap().to_vec(),
            get(xv),
            get(gv),
            get(bv),
            stats,
        )
    };
    let whole = run(0, items, Arc::new(AloneSum));
    let shared = Arc::new(ThreadSum {
        acc: Mutex::new(Vec::new()),
        barrier: Barrier::new(2),
    });
    let (s0, s1) = (Arc::clone(&shared), Arc::clone(&shared));
    let (r0, r1) = std::thread::scope(|sc| {
        let h0 = sc.spawn(|| run(0, 2, s0));
        let h1 = sc.spawn(|| run(2, items, s1));
        (h0.join().unwrap(), h1.join().unwrap())
    });
    let close = |a: f64, b: f64, what: &str| {
        assert!(
            (a - b).abs() < 1e-12 * (1.0 + a.abs()),
            "{what}: {a} vs {b}"
        )
    };
    // Outputs and statistics: the whole minibatch's.
    let y: Vec<f64> = r0.0.iter().chain(&r1.0).copied().collect();
    for (a, b) in whole.0.iter().zip(&y) {
        close(*a, *b, "output");
    }
    assert_eq!(r0.4.count, items * px);
    for ch in 0..c {
        close(whole.4.mean[ch], r1.4.mean[ch], "mean");
        close(whole.4.var[ch], r0.4.var[ch], "variance");
    }
    // A rank's gradient weighted by c_r/G, then summed: the whole one.
    let (w0, w1) = (2.0 / items as f64, 4.0 / items as f64);
    let dx: Vec<f64> =
        r0.1.iter()
            .map(|v| w0 * v)
            .chain(r1.1.iter().map(|v| w1 * v))
            .collect();
    for (a, b) in whole.1.iter().zip(&dx) {
        close(*a, *b, "∂E/∂x");
    }
    for ch in 0..c {
        close(whole.2[ch], w0 * r0.2[ch] + w1 * r1.2[ch], "∂E/∂γ");
        close(whole.3[ch], w0 * r0.3[ch] + w1 * r1.3[ch], "∂E/∂β");
    }
}

#[test]
fn a_failing_sum_is_an_error_not_a_panic() {
    struct Lost;
    impl BatchSum for Lost {
        fn sum(&self, _: &mut [f64]) -> std::result::Result<(), String> {
            Err("rank 1 was lost".into())
        }
    }
    let sum: Arc<dyn BatchSum> = Arc::new(Lost);
    let mut t = Tape::<f64>::new();
    let x = t.input(Tensor::from_vec(rand_vec(8, 9), &[4, 2]).unwrap());
    let g = t.input(Tensor::ones(&[2]));
    let b = t.input(Tensor::zeros(&[2]));
    let e = t
        .batch_norm_train_synced(x, g, b, 1e-5, false, &sum)
        .unwrap_err();
    assert!(e.to_string().contains("rank 1 was lost"), "{e}");
}
