use strata_kernels::gemm::{gemm, Trans};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (m, n, k): (usize, usize, usize) = (
        a[1].parse().unwrap(),
        a[2].parse().unwrap(),
        a[3].parse().unwrap(),
    );
    let tb = if a[4] == "T" { Trans::Yes } else { Trans::No };
    let iters: usize = a[5].parse().unwrap();
    let x = vec![0.5f32; m * k];
    let w = vec![0.25f32; n * k];
    let mut c = vec![0f32; m * n];
    let ldb = if tb == Trans::Yes { k } else { n };
    let t = std::time::Instant::now();
    for _ in 0..iters {
        gemm(Trans::No, tb, m, n, k, 1.0, &x, k, &w, ldb, 0.0, &mut c, n);
    }
    let s = t.elapsed().as_secs_f64();
    println!("{:.1} GFLOPS", 2.0 * (m * n * k * iters) as f64 / s / 1e9);
}
