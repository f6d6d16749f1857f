#!/usr/bin/env bash
# Data-parallel scaling on one machine (issue 25): the reference networks of
# DESIGN.md (mlp, cnn on MNIST; resnet20 on CIFAR-10), batch 128, trained for
# one epoch of a fixed subset by one process with --threads 2 and by
# `mpirun -np 2` with --threads 1 per rank (the same global batch), each
# configuration run REPS times, alternating. Prints one line per run:
# samples/s (training, from summary.json) and rank 0's share of the
# training's wall time spent in collective calls.
#
#   cargo build --release -p strata-cli --features mpi
#   bash benches/mpi-scaling.sh [DATA_DIR] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data}"
reps="${2:-3}"
bin=target/release/strata
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

common='
[optimizer]
kind = "sgd"
momentum = 0.9
weight_decay = 5e-4
schedule = { kind = "constant", lr = 0.01 }
[train]
epochs = 1
batch = 128
seed = 1
'
cat >"$work/mlp.toml" <<EOF
[data]
dataset = "mnist"
subset = 51200
validation = 0
test_subset = 1000
[model]
layers = ["flatten", { linear = 1024 }, "relu", { linear = 1024 }, "relu", { linear = 10 }]
$common
EOF
cat >"$work/cnn.toml" <<EOF
[data]
dataset = "mnist"
subset = 25600
validation = 0
test_subset = 1000
[model]
layers = [
  { conv = { out = 32, kernel = 3, pad = 1 } }, "relu", { maxpool = 2 },
  { conv = { out = 64, kernel = 3, pad = 1 } }, "relu", { maxpool = 2 },
  "flatten", { linear = 128 }, "relu", { dropout = 0.5 }, { linear = 10 },
]
$common
EOF
cat >"$work/resnet20.toml" <<EOF
[data]
dataset = "cifar10"
subset = 7680
validation = 0
test_subset = 500
[model]
layers = [{ resnet = { depth = 20, kind = "original" } }]
$common
EOF

echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs);" \
    "$(grep -o 'avx512[a-z]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
printf '%-9s %-22s %12s %16s\n' net run samples/s collective
for net in mlp cnn resnet20; do
    for rep in $(seq "$reps"); do
        for how in one mpi; do
            out="$work/$net-$how-$rep"
            if [ "$how" = one ]; then
                "$bin" train "$work/$net.toml" --data-dir "$data" --threads 2 --out "$out" \
                    >"$out.log" 2>&1 || { cat "$out.log"; exit 1; }
                label="1 process x 2 threads"
            else
                mpirun --oversubscribe -np 2 "$bin" train "$work/$net.toml" --data-dir "$data" \
                    --threads 1 --out "$out" >"$out.log" 2>&1 || { cat "$out.log"; exit 1; }
                label="2 ranks x 1 thread"
            fi
            python3 - "$out/summary.json" "$net" "$label" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
dp = s.get("data_parallel")
share = f"{100 * dp['collective_share']:.1f} %" if dp else "-"
print(f"{sys.argv[2]:<9} {sys.argv[3]:<22} {s['samples_per_second']:12.0f} {share:>16}")
PY
        done
    done
done
