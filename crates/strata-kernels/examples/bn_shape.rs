use strata_kernels::batchnorm::*;
fn main() {
    let (n, c, s) = (128usize, 16usize, 1024usize);
    let len = n * c * s;
    let x: Vec<f32> = (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let dy: Vec<f32> = (0..len)
        .map(|i| ((i * 104729) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let y: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
    let gamma = vec![1.0f32; c];
    let mean = vec![0.0f32; c];
    let invstd = vec![1.0f32; c];
    let mut dx = vec![0f32; len];
    let (mut dg, mut db) = (vec![0f32; c], vec![0f32; c]);
    for masked in [false, true, false, true] {
        let t = std::time::Instant::now();
        for _ in 0..20 {
            batch_norm_train_backward(
                &x,
                &dy,
                masked.then_some(&y[..]),
                n,
                c,
                s,
                &gamma,
                &mean,
                &invstd,
                &mut dx,
                &mut dg,
                &mut db,
            );
        }
        println!(
            "masked {masked}: {:.2} ms",
            t.elapsed().as_secs_f64() * 1e3 / 20.0
        );
    }
    let t = std::time::Instant::now();
    for _ in 0..20 {
        strata_kernels::elementwise::relu_backward(&y, &dy, &mut dx);
    }
    println!(
        "relu_backward: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3 / 20.0
    );
}
