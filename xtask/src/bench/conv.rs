//! The `conv` workload: 3×3 convolutions with padding 1 — the 64 → 64
//! slices on 32×32 images, minibatch 64, then the layers of the reference
//! networks — forward, backward-data and backward-weights GFLOPS.

use strata_kernels::conv::{
    conv2d_backward_data, conv2d_backward_weights, conv2d_forward, ConvGeometry,
};

use super::{Opts, Out, Record, Shape};

/// Deterministic values in [-1, 1).
fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `(label, batch, c_in, c_out, side, stride)` of a measured 3×3 convolution.
type ConvShape = (&'static str, usize, usize, usize, usize, usize);

/// The measured shapes: the 64→64 case first, then the 3×3 layers
/// of the reference networks (ResNet-20's three stages, the CNN's second conv)
/// the small late layers of examples/fashion-resnet.toml and the layers of
/// examples/cifar10-fast.toml.
const SHAPES: [ConvShape; 19] = [
    ("3×3 64→64 32×32 b64", 64, 64, 64, 32, 1),
    ("3×3 16→16 32×32 b128", 128, 16, 16, 32, 1),
    ("3×3 32→32 16×16 b128", 128, 32, 32, 16, 1),
    ("3×3 64→64 8×8 b128", 128, 64, 64, 8, 1),
    ("3×3 32→64 14×14 b128", 128, 32, 64, 14, 1),
    ("3×3 64→64 7×7 b128", 128, 64, 64, 7, 1),
    ("3×3 128→128 4×4 b128", 128, 128, 128, 4, 1),
    // First layers (few input slices) and a stride-2 stage entry.
    ("3×3 1→32 28×28 b128", 128, 1, 32, 28, 1),
    ("3×3 3→16 32×32 b128", 128, 3, 16, 32, 1),
    ("3×3 16→32 32×32 s2 b128", 128, 16, 32, 32, 2),
    // The rest of examples/fashion-resnet.toml: stage entries and 32→32 at 14×14.
    ("3×3 32→32 28×28 s2 b128", 128, 32, 32, 28, 2),
    ("3×3 32→32 14×14 b128", 128, 32, 32, 14, 1),
    ("3×3 32→64 14×14 s2 b128", 128, 32, 64, 14, 2),
    ("3×3 64→128 7×7 s2 b128", 128, 64, 128, 7, 2),
    // examples/cifar10-fast.toml (airbench): odd sides after 2×2 pools.
    ("3×3 24→64 31×31 b128", 128, 24, 64, 31, 1),
    ("3×3 64→64 15×15 b128", 128, 64, 64, 15, 1),
    ("3×3 64→256 15×15 b128", 128, 64, 256, 15, 1),
    ("3×3 256→256 7×7 b128", 128, 256, 256, 7, 1),
    ("3×3 256→256 3×3 b128", 128, 256, 256, 3, 1),
];

/// Measures the three passes for each shape, windows interleaved.
pub fn conv(o: &Opts, out: Out) -> Result<(), String> {
    SHAPES.into_iter().for_each(|shape| one(o, out, shape));
    Ok(())
}

fn one(o: &Opts, out: Out, (label, batch, c_in, c_out, side, stride): ConvShape) {
    let g = ConvGeometry {
        batch,
        c_in,
        h: side,
        w: side,
        c_out,
        kh: 3,
        kw: 3,
        stride_h: stride,
        stride_w: stride,
        pad_top: 1,
        pad_bottom: 1,
        pad_left: 1,
        pad_right: 1,
    };
    let x = data(g.batch * g.in_image(), 1);
    let w = data(g.weight_len(), 2);
    let dy = data(g.batch * g.out_image(), 3);
    let (mut y, mut dx, mut dw) = (vec![0.0; dy.len()], vec![0.0; x.len()], vec![0.0; w.len()]);
    let mut db = vec![0.0; g.c_out];
    let gflops = 2.0 * g.macs() as f64 * 1e-9;
    let mut fwd = || conv2d_forward(&g, &x, &w, None, &mut y);
    let mut bwd_data = || conv2d_backward_data(&g, &w, &dy, &mut dx);
    let mut bwd_w = || conv2d_backward_weights(&g, &x, &dy, &mut dw, Some(&mut db));
    let rates = o.timing.rates(&mut [
        (gflops, &mut fwd),
        (gflops, &mut bwd_data),
        (gflops, &mut bwd_w),
    ]);
    for (pass, gflops) in ["forward", "backward-data", "backward-weights"]
        .iter()
        .zip(rates)
    {
        out(&Record {
            workload: "conv".into(),
            imp: pass.to_string(),
            shape: Shape::Label(label),
            threads: o.threads,
            gflops,
        });
    }
}
