"""Runs a torch benchmark script with torch's fp32 matrix products at a
given precision, for `cargo xtask bench --matmul-precision bf16
--compare-torch PY`:

    python torch_fp32_precision.py bf16 SCRIPT [ARGS...]

`torch.backends.mkldnn.matmul.fp32_precision = "bf16"` lets oneDNN round
the operands of fp32 matrix products (linear layers, matmul) to bfloat16
and run them on AMX where the CPU has it; convolutions keep their fp32
setting, as strata's do under `train.matmul_precision = "bf16"`.
"""

import runpy
import sys

import torch

if __name__ == "__main__":
    precision, script = sys.argv[1], sys.argv[2]
    torch.backends.mkldnn.matmul.fp32_precision = {"bf16": "bf16", "f32": "ieee"}[precision]
    sys.argv = sys.argv[2:]
    runpy.run_path(script, run_name="__main__")
