//! A training loop of thousands of steps has flat memory: every intermediate
//! buffer of a step is released when its tape is dropped.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use strata_autograd::{Param, Tape};
use strata_kernels::gemm::Trans;
use strata_kernels::optim::sgd;
use strata_tensor::Tensor;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn memory_is_flat_over_thousands_of_steps() {
    strata_kernels::parallel::set_num_threads(1);
    let mut w1 = Param::new(Tensor::<f32>::full(&[32, 16], 0.05), true);
    let mut w2 = Param::new(Tensor::<f32>::full(&[4, 32], 0.05), true);
    let x = Tensor::<f32>::full(&[8, 16], 0.5);
    let labels = [0usize, 1, 2, 3, 0, 1, 2, 3];
    let step = |w1: &mut Param<f32>, w2: &mut Param<f32>| {
        let mut t = Tape::new();
        let xi = t.input(x.clone());
        let (a, b) = (t.param(w1), t.param(w2));
        let h = t.matmul(xi, a, Trans::No, Trans::Yes).unwrap();
        let h = t.relu(h).unwrap();
        let o = t.matmul(h, b, Trans::No, Trans::Yes).unwrap();
        let l = t.softmax_cross_entropy(o, &labels).unwrap();
        let g = t.backward(l).unwrap();
        let (g1, g2) = (
            g.param(w1.id()).unwrap().clone(),
            g.param(w2.id()).unwrap().clone(),
        );
        drop(g);
        drop(t);
        sgd(w1.value.data_mut(), &g1.to_vec(), 0.01);
        sgd(w2.value.data_mut(), &g2.to_vec(), 0.01);
    };
    for _ in 0..50 {
        step(&mut w1, &mut w2);
    }
    let after_warmup = LIVE.load(Ordering::Relaxed);
    for _ in 0..3000 {
        step(&mut w1, &mut w2);
    }
    let after = LIVE.load(Ordering::Relaxed);
    // Allow a little slack for lazily initialised statics, nothing per step.
    assert!(
        (after - after_warmup).abs() < 16 * 1024,
        "live bytes grew from {after_warmup} to {after}"
    );
}
