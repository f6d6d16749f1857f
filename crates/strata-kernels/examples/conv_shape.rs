use strata_kernels::conv::*;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let p = |i: usize| a[i].parse::<usize>().unwrap();
    let (cin, cout, hw, batch, iters) = (p(1), p(2), p(3), p(4), p(6));
    let g = ConvGeometry {
        batch,
        c_in: cin,
        h: hw,
        w: hw,
        c_out: cout,
        kh: 3,
        kw: 3,
        stride_h: 1,
        stride_w: 1,
        pad_top: 1,
        pad_bottom: 1,
        pad_left: 1,
        pad_right: 1,
    };
    let x = vec![0.5f32; batch * g.in_image()];
    let w = vec![0.25f32; g.weight_len()];
    let mut y = vec![0f32; batch * g.out_image()];
    let mut dx = vec![0f32; x.len()];
    let mut dw = vec![0f32; w.len()];
    let t = std::time::Instant::now();
    for _ in 0..iters {
        match a[5].as_str() {
            "f" => conv2d_forward(&g, &x, &w, None, &mut y),
            "d" => conv2d_backward_data(&g, &w, &y, &mut dx),
            _ => conv2d_backward_weights(&g, &x, &y, &mut dw, None),
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "{:.1} GFLOPS",
        2.0 * (g.macs() as usize * iters) as f64 / s / 1e9
    );
}
