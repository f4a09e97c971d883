#!/usr/bin/env bash
# Tables at several thread counts (a benchmark, not a test): for the paper's 224 space and the small
# preset (28 px grey, width 0.25), profiles a table at each thread count and validates it right after
# (`fbnet lut validate`, FBNet-A/B/C where they fit and ARCHS random architectures, at the table's own
# thread count), then prints a Markdown table: per space, threads and dtype, the profile's time, the
# raw figures, the figures corrected by the speed reference, and those against the best constant factor.
#
#   benches/tables-threads.sh [OUT]     # THREADS="1 2" ARCHS=16 SEED=777 SPACES="224 small"
#
# OUT (default: a temporary folder, removed) keeps every table and validation report.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${THREADS:-1 2}"
archs="${ARCHS:-16}"
seed="${SEED:-777}"
spaces="${SPACES:-224 small}"
scripts/setup-ort.sh >/dev/null
cargo build --release --locked -p fbnet
fbnet=target/release/fbnet
if [ $# -ge 1 ]; then
    out="$1"
    mkdir -p "$out"
else
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
for space in $spaces; do
    case "$space" in
        224) flags=(--space fbnet-224) ;;
        small) flags=(--space fbnet-small --resolution 28 --input-channels 1 --width 0.25) ;;
        *) echo "unknown space $space (224 or small)" >&2; exit 2 ;;
    esac
    for t in $threads; do
        start=$(date +%s%N)
        "$fbnet" profile "${flags[@]}" --threads "$t" --force --out "$out/$space-t$t.json" | tail -n 1
        end=$(date +%s%N)
        echo "$(( (end - start) / 1000000 ))" > "$out/$space-t$t.profile-ms"
        "$fbnet" lut validate --lut "$out/$space-t$t.json" --archs "$archs" --seed "$seed" \
            --out "$out/$space-t$t.validate.json" | tail -n 9
    done
done
python3 - "$out" $spaces -- $threads <<'PY'
import json, sys
out = sys.argv[1]
rest = sys.argv[2:]
spaces, threads = rest[:rest.index("--")], rest[rest.index("--") + 1:]
pct = lambda v: "–" if v is None else f"{v * 100:.0f}%"
mae = lambda v: "–" if v is None else f"{v * 100:.1f}%"
print("| space | threads | dtype | profile s | raw: within ±10% / MAE | speed now (reference) | drift-corrected: within ±10% / MAE | best constant factor: factor, within / MAE |")
print("|---|---|---|---|---|---|---|---|")
for space in spaces:
    for t in threads:
        r = json.load(open(f"{out}/{space}-t{t}.validate.json"))
        secs = int(open(f"{out}/{space}-t{t}.profile-ms").read()) / 1000
        for s in r["summary"]:
            speed = s.get("speed_now")
            print(f"| {space} | {t} | {s['dtype']} | {secs:.1f} | {pct(s['within_10pct'])} / {mae(s['mean_abs_error'])} | "
                  f"{'–' if speed is None else f'{speed:.2f}x'} | {pct(s.get('within_10pct_corrected'))} / {mae(s.get('mean_abs_error_corrected'))} | "
                  f"{s['drift']:.2f}x, {pct(s['within_10pct_relative'])} / {mae(s['mean_abs_error_relative'])} |")
PY
