#!/usr/bin/env bash
# Checks that single strata crates can be taken as dependencies on their own
# (issue 29): a throwaway crate outside the workspace depends by path on
# crates/strata-kernels alone, calls its GEMM and checks the result; a second
# one does the same with crates/strata-data (an in-memory data set, ZCA fitted
# on it). Each is built and run with plain `cargo run`, so the registry
# dependencies are resolved afresh from crates.io, as a user's would be.
#
# Everything — sources, Cargo.lock, target dir — lives in one temporary folder
# that is removed at the end (KEEP=1 keeps it and prints its path), so nothing
# is left in the repository.
#
# Usage: bash scripts/standalone-check.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/strata-standalone.XXXXXX")"
if [ "${KEEP:-0}" = 1 ]; then
    echo "keeping $tmp"
else
    trap 'rm -rf "$tmp"' EXIT
fi
export CARGO_TARGET_DIR="$tmp/target"

# new_crate NAME DEPENDENCY-LINES: a binary crate at $tmp/NAME; main.rs from stdin.
new_crate() {
    mkdir -p "$tmp/$1/src"
    cat > "$tmp/$1/Cargo.toml" <<EOF
[package]
name = "$1"
version = "0.0.0"
edition = "2021"
publish = false

# Its own workspace, whatever folder it lands in.
[workspace]

[dependencies]
$2
EOF
    cat > "$tmp/$1/src/main.rs"
}

new_crate kernels-alone "strata-kernels = { path = \"$root/crates/strata-kernels\" }" <<'EOF'
use strata_kernels::gemm::{choose, gemm, gemm_with, GemmImpl, Trans};

/// `C = op(A)·B` by the definition, in f64. `a` is m×k, or k×m when `ta`.
fn reference(ta: bool, m: usize, n: usize, k: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|p| if ta { a[p * m + i] } else { a[i * k + p] } * b[p * n + j])
                .sum();
        }
    }
    c
}

fn main() {
    // The README's product: C (2×2) = A (2×3) · B (3×2).
    let a = [1.0f32, 2., 3., 4., 5., 6.];
    let b = [1.0f32, 0., 0., 1., 1., 1.];
    let mut c = [0.0f32; 4];
    gemm(
        Trans::No,
        Trans::No,
        2,
        2,
        3,
        1.0,
        &a,
        3,
        &b,
        2,
        0.0,
        &mut c,
        2,
    );
    assert_eq!(c, [4., 5., 10., 11.]);

    // Sizes that are no multiple of any register tile, so full tiles and edges
    // both run. Entries are multiples of 1/32 and the sums stay far below 2^24/32,
    // so every rounding is exact and the result must equal the definition bit for bit.
    let (m, n, k) = (67, 45, 131);
    let a: Vec<f64> = (0..m * k)
        .map(|i| ((i * 7 % 13) as f64 - 6.0) / 8.0)
        .collect();
    let b: Vec<f64> = (0..k * n)
        .map(|i| ((i * 5 % 11) as f64 - 5.0) / 4.0)
        .collect();
    let want = reference(false, m, n, k, &a, &b);
    let (a32, b32): (Vec<f32>, Vec<f32>) = (
        a.iter().map(|&v| v as f32).collect(),
        b.iter().map(|&v| v as f32).collect(),
    );
    let mut ran = Vec::new();
    for imp in GemmImpl::ALL.into_iter().filter(|i| i.is_available()) {
        let mut c = vec![0.0f32; m * n];
        gemm_with(
            imp,
            Trans::No,
            Trans::No,
            m,
            n,
            k,
            1.0,
            &a32,
            k,
            &b32,
            n,
            0.0,
            &mut c,
            n,
        );
        let got: Vec<f64> = c.iter().map(|&v| v as f64).collect();
        assert_eq!(got, want, "sgemm through {}", imp.name());
        ran.push(imp.name());
    }

    // dgemm with A stored transposed (k×m), the default implementation.
    let at: Vec<f64> = (0..k * m)
        .map(|i| ((i * 3 % 17) as f64 - 8.0) / 16.0)
        .collect();
    let mut c = vec![0.0f64; m * n];
    gemm(
        Trans::Yes,
        Trans::No,
        m,
        n,
        k,
        1.0,
        &at,
        m,
        &b,
        n,
        0.0,
        &mut c,
        n,
    );
    assert_eq!(c, reference(true, m, n, k, &at, &b), "dgemm, op(A) = Aᵀ");

    println!(
        "strata-kernels alone: ok (sgemm through {}; default {})",
        ran.join(", "),
        choose::<f32>(m, n, k).name()
    );
}
EOF

new_crate data-alone "strata-data = { path = \"$root/crates/strata-data\" }" <<'EOF'
use strata_data::{Dataset, FittedPipeline, Preprocess};

fn main() -> Result<(), strata_data::DataError> {
    // 400 in-memory 1×4×4 images whose 16 pixels share two hidden factors plus
    // their own noise (a seeded generator), so the pixels are strongly correlated.
    let (n, d) = (400usize, 16usize);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let mut pixels = Vec::with_capacity(n * d);
    for _ in 0..n {
        let (f, g) = (uniform(), uniform());
        for p in 0..d {
            let w = p as f32 / d as f32;
            pixels.push(0.5 + 0.3 * (w * f + (1.0 - w) * g) + 0.05 * uniform());
        }
    }
    let labels = (0..n).map(|i| i % 2).collect();
    let classes = vec!["even".to_string(), "odd".to_string()];
    let mut train = Dataset::from_f32(pixels, [n, 1, 4, 4], labels, classes)?;

    // ZCA fitted on the training set: z = Uᵀ(Λ + εI)^{-1/2}U(x − m).
    let eps = 1e-6;
    let fitted = FittedPipeline::fit_apply(&[Preprocess::Zca { eps }], &mut train)?;
    assert_eq!(fitted.output_shape(), [1, 4, 4]);

    // The whitened set has mean 0 and covariance (1/N)·ZᵀZ ≈ I.
    let z = train.to_tensor()?.into_vec();
    let mut worst: f64 = 0.0;
    for i in 0..d {
        let mean: f64 = (0..n).map(|s| z[s * d + i] as f64).sum::<f64>() / n as f64;
        assert!(mean.abs() < 1e-4, "pixel {i}: mean {mean}");
        for j in 0..d {
            let cov: f64 = (0..n)
                .map(|s| z[s * d + i] as f64 * z[s * d + j] as f64)
                .sum::<f64>()
                / n as f64;
            let want = if i == j { 1.0 } else { 0.0 };
            worst = worst.max((cov - want).abs());
        }
    }
    assert!(
        worst < 0.02,
        "covariance of the whitened data is {worst} away from I"
    );

    // The fitted state round-trips through named tensors (what a checkpoint stores).
    let restored = FittedPipeline::from_tensors(&fitted.to_tensors(), &[Preprocess::Zca { eps }])?;
    assert_eq!(restored, fitted);

    // And the embedded UCI digits need no file at all.
    let digits = strata_data::digits_split();
    assert_eq!((digits.train.len(), digits.test.len()), (1501, 296));

    println!("strata-data alone: ok (ZCA on {n} images: covariance within {worst:.1e} of I)");
    Ok(())
}
EOF

for name in kernels-alone data-alone; do
    echo "== $name: cargo run (target dir $CARGO_TARGET_DIR)"
    (cd "$tmp/$name" && cargo run --quiet)
done
echo "standalone-check: OK"
