#!/usr/bin/env bash
# Fuzzes fbnet's readers of untrusted input with cargo-fuzz (libFuzzer, AddressSanitizer): latency tables,
# search spaces, architectures, exported models' protobuf and metadata, images to classify, IDX and
# CIFAR-10 dataset files. A benchmark, not a test: it needs the nightly toolchain and cargo-fuzz
# (`rustup toolchain install nightly`, `cargo install cargo-fuzz`).
#
# Usage: benches/fuzz.sh [SECONDS]   (each target runs SECONDS, default 60; TARGETS="lut image" picks some)
#
# Each target starts from a corpus of valid inputs: fuzz/seeds/ (small images, IDX and CIFAR-10 files)
# plus files made here from the repository (the committed tables, a space, an architecture, and the
# bridge fixtures' models with fbnet metadata). A crash leaves its input in fuzz/artifacts/TARGET/, the
# script goes on with the other targets and exits non-zero at the end; turn each crash into a regression
# test next to the parser's own tests.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
read -r -a targets <<< "${TARGETS:-lut space arch model_meta image idx cifar}"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz not found: cargo install cargo-fuzz" >&2; exit 1; }

corpus=fuzz/corpus
for t in "${targets[@]}"; do mkdir -p "$corpus/$t"; done
[ -d fuzz/seeds ] && for t in image idx cifar; do
    [ -d "fuzz/seeds/$t" ] && cp fuzz/seeds/"$t"/* "$corpus/$t/" 2>/dev/null || true
done
for f in tables/*.json; do
    case "$f" in *.validate.json) ;; *) cp "$f" "$corpus/lut/" ;; esac
done
cargo build -q --release -p fbnet
target/release/fbnet space show --space fbnet-small --json > "$corpus/space/fbnet-small.json"
target/release/fbnet space show --space fbnet-224 --json > "$corpus/space/fbnet-224.json"
cp docs/example-search/searched-best.json "$corpus/arch/"
fixtures=$(mktemp -d)
trap 'rm -rf "$fixtures"' EXIT
cargo run -q --release -p mobile-core --example bridge_fixtures -- "$fixtures" >/dev/null
cp "$fixtures"/*.onnx "$corpus/model_meta/"
cp "$fixtures/space.json" "$corpus/space/tiny.json"

failed=()
for t in "${targets[@]}"; do
    echo "== $t: ${seconds} s"
    # inputs up to the largest seed (the tables are ~60 KB)
    if ! cargo +nightly fuzz run -O "$t" "$corpus/$t" -- -max_total_time="$seconds" -max_len=131072 \
        -print_final_stats=1 2>&1 | grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|Done)' ; then
        :
    fi
    if [ -n "$(ls -A "fuzz/artifacts/$t" 2>/dev/null)" ]; then
        echo "$t: crash inputs in fuzz/artifacts/$t/"
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "no crash in ${targets[*]} (${seconds} s each)"
