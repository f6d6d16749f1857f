#!/usr/bin/env bash
# kill -9 at N random moments of a training run, then --resume (issue 24):
# every resumed run must end with a model.safetensors byte-identical to an
# uninterrupted run's, and leave no temporary file behind.
#
# The run: a CNN with batch norm, dropout and augmentation (crops, flips) on
# the embedded digits, a checkpoint after every epoch.
#
#   cargo build --release -p strata-cli
#   bash scripts/kill-resume.sh [N]        # N = 20 by default
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20}"
bin=target/release/strata
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/cnn.toml" <<'SPEC'
[data]
dataset = "digits"
validation = 200
augment = { crop = { size = 8, pad = 1 }, flip = true }
[model]
layers = [
  { conv = { out = 32, kernel = 3, pad = "same", bias = false } }, "batchnorm", "relu",
  { conv = { out = 32, kernel = 3, pad = "same", bias = false } }, "batchnorm", "relu",
  { maxpool = 2 }, "flatten", { linear = 128 }, "relu", { dropout = 0.2 }, { linear = 10 },
]
[optimizer]
momentum = 0.9
weight_decay = 5e-4
schedule = { kind = "cosine", lr = 0.05 }
[train]
epochs = 40
batch = 32
seed = 7
SPEC

start=$(date +%s.%N)
"$bin" train "$work/cnn.toml" --threads 2 --out "$work/ref" >/dev/null 2>&1
length=$(echo "$(date +%s.%N) - $start" | bc)
want=$(sha256sum <"$work/ref/model.safetensors")
echo "uninterrupted run: ${length} s, model $(echo "$want" | cut -c1-16)…"

same=0
for i in $(seq "$n"); do
    out="$work/run$i"
    # A moment uniformly in (2 %, 98 %) of the uninterrupted run's length.
    at=$(awk -v s="$RANDOM" -v t="$length" 'BEGIN { srand(s); printf "%.3f", t * (0.02 + 0.96 * rand()) }')
    "$bin" train "$work/cnn.toml" --threads 2 --out "$out" >/dev/null 2>&1 &
    pid=$!
    sleep "$at"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ -f "$out/model.safetensors" ] && [ ! -f "$out/checkpoint/state.safetensors" ] && [ -f "$out/summary.json" ]; then
        how="finished before the kill"
    elif [ -f "$out/checkpoint/state.safetensors" ]; then
        how="resumed"
        "$bin" train "$work/cnn.toml" --threads 2 --out "$out" --resume >/dev/null 2>"$out.err" \
            || { echo "run $i: --resume failed:"; cat "$out.err"; exit 1; }
    else
        # Killed before the first checkpoint: nothing to resume, start over.
        how="restarted (no checkpoint yet)"
        "$bin" train "$work/cnn.toml" --threads 2 --out "$out" --overwrite >/dev/null 2>"$out.err" \
            || { echo "run $i: restart failed:"; cat "$out.err"; exit 1; }
    fi
    got=$(sha256sum <"$out/model.safetensors")
    stray=$(find "$out" -name '*.tmp*' | wc -l)
    verdict=differs
    if [ "$got" = "$want" ] && [ "$stray" -eq 0 ]; then
        verdict=identical
        same=$((same + 1))
    fi
    echo "run $i: killed at ${at} s, $how: model $verdict, $stray temporary files left"
done
echo "$same/$n byte-identical to the uninterrupted run"
[ "$same" -eq "$n" ]
