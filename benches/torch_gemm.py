"""torch.mm GFLOPS beside `cargo xtask bench gemm` (same sizes, same timing rule).
Usage: python benches/torch_gemm.py [--threads 2] [--window 0.3] [--windows 7]
Prints one JSON object per line, like `cargo xtask bench gemm --json`."""
import argparse, json, statistics, time, torch

def rate(f, flops, window, windows):
    def one():
        t = time.perf_counter(); n = 0
        while time.perf_counter() - t < window: f(); n += 1
        return flops * n / (time.perf_counter() - t)
    one()  # warm-up
    return statistics.median(one() for _ in range(windows))

if __name__ == "__main__":
    p = argparse.ArgumentParser(); p.add_argument("--threads", type=int, default=2)
    p.add_argument("--window", type=float, default=0.3); p.add_argument("--windows", type=int, default=7)
    a = p.parse_args(); torch.set_num_threads(a.threads)
    runs = [("sgemm", torch.float32, n) for n in (256, 512, 1024, 2048)] + [("dgemm", torch.float64, 1024)]
    for work, dtype, n in runs:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(n, n, dtype=dtype, generator=g); y = torch.rand(n, n, dtype=dtype, generator=g)
        out = torch.empty(n, n, dtype=dtype)
        gf = rate(lambda: torch.mm(x, y, out=out), 2 * n ** 3 * 1e-9, a.window, a.windows)
        print(json.dumps({"workload": work, "impl": f"torch.mm {torch.__version__}", "n": n, "threads": a.threads, "gflops": round(gf, 1)}, separators=(",", ":")), flush=True)
