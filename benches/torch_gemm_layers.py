"""torch's rates at the shapes of `cargo xtask bench gemm-layers` (the MLP's
products at batch 128), fp32 and with `fp32_precision = "bf16"`, to set
beside strata's `strata-avx512` and `strata-amx-bf16` columns:

    python benches/torch_gemm_layers.py [--threads 2]

Each figure is the best of 300 calls after 20 warm-up calls, in GFLOPS.
"""

import argparse
import time

import torch

# (m, n, k, op(A) transposed, op(B) transposed, label), as xtask's `layers`.
SHAPES = [
    (128, 1024, 784, False, True, "A·Bᵀ"),
    (128, 1024, 1024, False, True, "A·Bᵀ"),
    (128, 10, 1024, False, True, "A·Bᵀ"),
    (128, 784, 1024, False, False, "A·B"),
    (1024, 784, 128, True, False, "Aᵀ·B"),
    (1024, 1024, 128, True, False, "Aᵀ·B"),
]


def best_ms(f, calls=300):
    for _ in range(20):
        f()
    best = float("inf")
    for _ in range(calls):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__} threads={a.threads}")
    for prec in ["ieee", "bf16"]:
        torch.backends.mkldnn.matmul.fp32_precision = prec
        for m, n, k, ta, tb, op in SHAPES:
            x = torch.randn(k, m).T if ta else torch.randn(m, k)
            y = torch.randn(n, k).T if tb else torch.randn(k, n)
            ms = best_ms(lambda: x @ y)
            name = "torch-fp32" if prec == "ieee" else "torch-bf16"
            print(f"sgemm    {name:<26} {op} {m}×{n}×{k}  {2 * m * n * k / ms * 1e-6:10.1f}")
