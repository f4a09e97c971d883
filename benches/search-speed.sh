#!/usr/bin/env bash
# Search speed of the relaxations and θ schedules, side by side in one run: the soft mixture (the paper's
# Σ m_i·b_i(x) over all nine candidates) with θ batches interleaved (the default) or θ learning from the
# weight batches themselves (joint), against the hard one (GDAS's straight-through Gumbel: one candidate
# per image, or per batch). Each is a fresh `fbnet search` process on the same images, the modes
# alternating ROUNDS times (default 2) so that the VM's drift falls on all of them alike. Reports the
# images per second of the last epoch (θ learning; weight and θ batches both counted), the wall time and
# the peak resident memory.
#
#   benches/search-speed.sh           # IMAGES [1000], EPOCHS [2], ROUNDS [2], LUT [the small table]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-2}"
images="${IMAGES:-1000}"
epochs="${EPOCHS:-2}"
lut="${LUT:-tables/fbnet-small-r28-w0.25-i1-amd-epyc-t1.json}"
fbnet=${FBNET:-target/release/fbnet}
[ -x "$fbnet" ] || cargo build --release -q -p fbnet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name | flags
modes=(
    "soft, noise per image, θ batches interleaved (default)|--relaxation soft"
    "soft, noise per image, θ from the weight batches (joint)|--relaxation soft --theta-schedule joint"
    "hard, noise per image|--relaxation hard"
    "hard, noise per batch|--relaxation hard --gumbel batch"
)
declare -A ips wall peak
for r in $(seq "$rounds"); do
    for i in "${!modes[@]}"; do
        IFS='|' read -r name flags <<<"${modes[$i]}"
        run="$work/run-$r-$i"
        start=$(date +%s.%N)
        # shellcheck disable=SC2086
        /usr/bin/time -f '%M' -o "$work/rss" "$fbnet" search --lut "$lut" --max-images "$images" \
            --epochs "$epochs" --seed 1 $flags --out "$run" >"$run.log" 2>&1 ||
            { echo "$name failed: see $run.log" >&2; cat "$run.log" >&2; exit 1; }
        end=$(date +%s.%N)
        last=$(tail -n 1 "$run/metrics.jsonl")
        ips[$i]+="$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["images_per_second"]))' "$last") "
        wall[$i]+="$(python3 -c "print(f'{$end - $start:.1f}')") "
        peak[$i]+="$(( $(cat "$work/rss") / 1024 )) "
        echo "round $r, $name: ${ips[$i]}img/s, ${wall[$i]}s, ${peak[$i]}MB" >&2
    done
done
range() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk 'NR == 1 { a = $0 } { b = $0 } END { print (a == b ? a : a "–" b) }'; }
echo "| relaxation and schedule | images/s (last epoch) | wall s | peak MB |"
echo "|---|---|---|---|"
for i in "${!modes[@]}"; do
    IFS='|' read -r name _ <<<"${modes[$i]}"
    echo "| $name | $(range "${ips[$i]}") | $(range "${wall[$i]}") | $(range "${peak[$i]}") |"
done
echo "($images images, $epochs epochs, $rounds rounds alternating; $(nproc) cores)"
