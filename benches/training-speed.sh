#!/usr/bin/env bash
# Training speed, fbnet (candle + our CPU kernels) against PyTorch eager on the same CPU, on identical
# networks (PyTorch's is built from the description fbnet prints), float32, the same batch, input size and
# thread count. Runs each case A/B interleaved, ROUNDS times (default 2), each run a fresh process (so peak
# memory is per framework), and prints a Markdown table of images/s, the ratio and peak memory.
#
#   benches/training-speed.sh            # needs PyTorch: python3 -m pip install torch
#                                        # (or TORCH_PATH=DIR naming a `pip install --target DIR torch`)
#
# Cases (issue 6): 1. the super net of the small preset (28 px grey, width 0.25, 10 classes) at batch 64;
# 2. the stand-alone FBNet-B of the same preset at batch 128; 3. one super net layer of the paper's space
# at 56x56 (24 channels, all nine candidates), batch 32.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-2}"
threads="${THREADS:-$(nproc)}"
steps="${STEPS:-5}"
export PYTHONPATH="${TORCH_PATH:+$TORCH_PATH:}${PYTHONPATH:-}"
export RAYON_NUM_THREADS="$threads"
python3 -c "import torch" 2>/dev/null || { echo "PyTorch is not installed: python3 -m pip install torch" >&2; exit 1; }
cargo build --release -q -p fbnet --example train_step
step=target/release/examples/train_step
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[2])[sys.argv[1]])' "$1" "$2"; }

target/release/fbnet space show --space fbnet-small --resolution 28 --width 0.25 --input-channels 1 \
    --classes 10 --json >"$work/small.json"
cat >"$work/layer56.json" <<'JSON'
{"name": "fbnet-layer-56", "resolution": 56, "input_channels": 24, "stem_channels": 24, "stem_stride": 1,
 "stages": [{"channels": 24, "layers": 1, "stride": 1}], "head_channels": 64, "num_classes": 10,
 "width": 1.0,
 "candidates": ["k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip"]}
JSON

# name | space | extra args | batch
cases=(
    "1 super net, small preset|small.json||64"
    "2 FBNet-B, small preset|small.json|--builtin fbnet-b|128"
    "3 one 56x56 super net layer|layer56.json||32"
)
echo "| case | batch | fbnet img/s | PyTorch img/s | fbnet / PyTorch | fbnet peak MB | PyTorch peak MB |"
echo "|---|---|---|---|---|---|---|"
for c in "${cases[@]}"; do
    IFS='|' read -r name space extra batch <<<"$c"
    # shellcheck disable=SC2086
    "$step" "$work/$space" $extra --describe >"$work/desc.json"
    ours=(); theirs=(); our_mem=(); their_mem=()
    for r in $(seq "$rounds"); do
        # shellcheck disable=SC2086
        a=$("$step" "$work/$space" $extra --batch "$batch" --steps "$steps" --warmup 2)
        b=$(python3 benches/torch_train_step.py "$work/desc.json" --batch "$batch" --steps "$steps" \
            --warmup 2 --threads "$threads")
        ours+=("$(field images_per_s "$a")"); our_mem+=("$(field peak_rss_mb "$a")")
        theirs+=("$(field images_per_s "$b")"); their_mem+=("$(field peak_rss_mb "$b")")
        if [ "$(field params "$a")" != "$(field params "$b")" ]; then
            echo "$name: the two networks differ ($(field params "$a") against $(field params "$b") parameters)" >&2
            exit 1
        fi
        echo "$name round $r: fbnet $a" >&2
        echo "$name round $r: torch $b" >&2
    done
    python3 - "$name" "$batch" "${ours[*]}" "${theirs[*]}" "${our_mem[*]}" "${their_mem[*]}" <<'PY'
import sys
name, batch = sys.argv[1], sys.argv[2]
ours, theirs, om, tm = ([float(v) for v in a.split()] for a in sys.argv[3:7])
ratios = [o / t for o, t in zip(ours, theirs)]
def span(v, f):
    lo, hi = f.format(min(v)), f.format(max(v))
    return lo if lo == hi else f"{lo}–{hi}"
print(f"| {name} | {batch} | {span(ours, '{:.1f}')} | {span(theirs, '{:.1f}')} | {span(ratios, '{:.2f}')}× | "
      f"{span(om, '{:.0f}')} | {span(tm, '{:.0f}')} |")
PY
done
