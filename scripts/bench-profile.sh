#!/usr/bin/env bash
# Benchmark of `fbnet profile` (not a test): profiles the paper's 224 space, both dtypes, 1 thread,
# twice, and reports each run's wall time and how stable the per-op medians are between the runs.
# Usage: scripts/bench-profile.sh [extra profile flags, e.g. --method isolated]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-ort.sh >/dev/null
cargo build --release --locked -p fbnet
out=$(mktemp -d)
for run in 1 2; do
    start=$(date +%s%N)
    target/release/fbnet profile --space fbnet-224 --dtype fp32,int8 --threads 1 --out "$out/run$run.json" "$@" | tail -n 1
    end=$(date +%s%N)
    echo "run $run: $(( (end - start) / 1000000 )) ms wall"
done
target/release/fbnet lut diff "$out/run1.json" "$out/run2.json" | grep "over all common ops"
rm -rf "$out"
