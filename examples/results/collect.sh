#!/usr/bin/env bash
# Copies the files of a finished `strata train` run that examples/results keeps:
#   examples/results/collect.sh RUN_DIR NAME
# (summary, per-epoch metrics, plots, confusion matrix; not the weights).
set -euo pipefail
run=$1 name=$2
dest=$(dirname "$0")/$name
mkdir -p "$dest"
for f in summary.json metrics.csv loss.png accuracy.png confusion.txt spec.toml; do
  cp "$run/$f" "$dest/"
done
echo "copied $run → $dest"
