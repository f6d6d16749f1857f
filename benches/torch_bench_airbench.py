"""`torch_bench.py`'s loop (../shared/bench) on the network of
examples/cifar10-fast.toml, for `cargo xtask bench airbench --compare-torch PY`.

The network is examples/torch-recipe/cifar10_fast.py's, the step the shared
script's (SGD with momentum, cross-entropy, batch from --batch), so the rates
compare with strata's `airbench` workload like the shared workloads do.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "bench"))
sys.path.insert(0, os.path.join(HERE, "..", "examples", "torch-recipe"))

import torch  # noqa: E402
import torch_bench  # noqa: E402
from cifar10_fast import Net  # noqa: E402

if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--only", default="airbench")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch_bench.WORK = {"airbench": (Net, (3, 32, 32))}
    tr, ev = torch_bench.bench("airbench", a.batch, a.seconds)
    print(f"torch {torch.__version__} threads={a.threads} airbench batch={a.batch}: "
          f"train {tr:.0f} samples/s, eval {ev:.0f} samples/s", flush=True)
