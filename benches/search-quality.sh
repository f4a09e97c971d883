#!/usr/bin/env bash
# Search quality (a benchmark, not a test): does the searched network beat random networks of the same
# predicted latency when both are trained from scratch with one recipe?
#
# For each dataset, setting (the defaults, --paper) and mode (free: where the search lands by itself;
# target: --target-ms at the median latency of random architectures of the space):
#   1. search with the setting on SEARCH_IMAGES training images for SEARCH_EPOCHS epochs;
#   2. draw RANDOMS uniformly random architectures within ±5% of the searched-best's predicted latency;
#   3. train the searched-best and every random one from scratch, once per seed in SEEDS, with one recipe
#      (TRAIN_IMAGES images, TRAIN_EPOCHS epochs, cosine from lr 0.05, batch 128);
#   4. top-1 on VAL_IMAGES test images of the epoch chosen on the 10% of the training images that
#      `fbnet train` holds out (--val-split), so the test split never chooses anything.
# Once per dataset the recipe is checked on two hand designs: all-k3_e6 must beat all-skip clearly.
# Results: OUT/results.tsv (one line per trained network) and OUT/summary.md (the table for the README).
#
# Usage: benches/search-quality.sh OUT_DIR
# Environment (defaults in brackets): FBNET [target/release/fbnet], DATASETS [fashion cifar],
# SETTINGS [default paper], MODES [free target], SEEDS [1 2], RANDOMS [4], SEARCH_IMAGES [2000],
# SEARCH_EPOCHS [3], TRAIN_IMAGES [10000], TRAIN_EPOCHS [8], VAL_IMAGES [2000],
# CIFAR_DIR [../shared/data/cifar10-jpg].
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: benches/search-quality.sh OUT_DIR}
fbnet=${FBNET:-target/release/fbnet}
[ -x "$fbnet" ] || cargo build --release -p fbnet
mkdir -p "$out/train"
results="$out/results.tsv"
[ -f "$results" ] || printf 'dataset\tsetting\tmode\tnetwork\tseed\tpredicted_ms\ttop1\n' >"$results"

lut_of() {
    case $1 in
    fashion) echo tables/fbnet-small-r28-w0.25-i1-amd-epyc-t1.json ;;
    cifar) echo tables/fbnet-small-w0.25-amd-epyc-t1.json ;;
    esac
}
data_of() {
    case $1 in
    fashion) echo fashion-mnist ;;
    cifar) echo "${CIFAR_DIR:-../shared/data/cifar10-jpg}" ;;
    esac
}
# the predicted latency (ms) that `fbnet arch random` printed for a file
ms_of() { sed -n "s|^$1 \([0-9.]*\) ms.*|\1|p" "$2"; }

# trains one network (skipped if its run finished before) and appends its top-1
train() { # dataset setting mode name arch_file seed lut data predicted_ms
    local run="$out/train/$1-$2-$3-$4-s$6"
    if [ ! -f "$run/result.json" ]; then
        rm -rf "$run"
        "$fbnet" train "$5" --lut "$7" --data "$8" --epochs "${TRAIN_EPOCHS:-8}" --batch-size 128 \
            --lr 0.05 --schedule cosine --max-images "${TRAIN_IMAGES:-10000}" \
            --max-val-images "${VAL_IMAGES:-2000}" --seed "$6" --workers 2 --out "$run" >"$run.log" 2>&1 ||
            { echo "training $run failed: see $run.log" >&2; return 1; }
    fi
    python3 - "$run" "$1" "$2" "$3" "$4" "$6" "$9" >>"$results" <<'PY'
import json, sys
run, ds, setting, mode, name, seed, ms = sys.argv[1:8]
best = json.load(open(f"{run}/result.json"))["best"]
print(f"{ds}\t{setting}\t{mode}\t{name}\t{seed}\t{ms}\t{100 * best['top1']:.2f}")
PY
}

for ds in ${DATASETS:-fashion cifar}; do
    lut=$(lut_of "$ds")
    data=$(data_of "$ds")
    median=$("$fbnet" arch random --lut "$lut" --count 0 --out "$out/$ds/ref" | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p')
    echo "$ds: median latency of random architectures ${median} ms"
    for ref in k3_e6 skip; do
        "$fbnet" arch random --lut "$lut" --all "$ref" --out "$out/$ds/ref" >"$out/$ds/ref/all-$ref.txt"
        for seed in ${SEEDS:-1 2}; do
            train "$ds" recipe check "all-$ref" "$out/$ds/ref/all-$ref.json" "$seed" "$lut" "$data" \
                "$(ms_of "$out/$ds/ref/all-$ref.json" "$out/$ds/ref/all-$ref.txt")"
        done
    done
    for setting in ${SETTINGS:-default paper}; do
        for mode in ${MODES:-free target}; do
            flags=()
            [ "$setting" = paper ] && flags+=(--paper)
            [ "$mode" = target ] && flags+=(--target-ms "$median")
            run="$out/$ds/search-$setting-$mode"
            if [ ! -f "$run/result.json" ]; then
                rm -rf "$run"
                "$fbnet" search --lut "$lut" --data "$data" --max-images "${SEARCH_IMAGES:-2000}" \
                    --epochs "${SEARCH_EPOCHS:-3}" --seed 1 --workers 2 "${flags[@]}" --out "$run" \
                    >"$run.log" 2>&1 || { echo "search $run failed: see $run.log" >&2; exit 1; }
            fi
            best_ms=$(python3 -c "import json,sys; r=json.load(open('$run/result.json')); print([v for d,v in r['best']['latency_us'] if d=='int8'][0]/1000)")
            "$fbnet" arch random --lut "$lut" --near-ms "$best_ms" --tolerance 0.05 \
                --count "${RANDOMS:-4}" --seed 7 --out "$run/random" >"$run/random.txt"
            for seed in ${SEEDS:-1 2}; do
                train "$ds" "$setting" "$mode" searched "$run/searched-best.json" "$seed" "$lut" \
                    "$data" "$best_ms"
                for f in "$run"/random/random-*.json; do
                    train "$ds" "$setting" "$mode" "$(basename "$f" .json)" "$f" "$seed" "$lut" \
                        "$data" "$(ms_of "$f" "$run/random.txt")"
                done
            done
        done
    done
done
python3 benches/search_quality_summary.py "$results" "$out" >"$out/summary.md"
cat "$out/summary.md"
