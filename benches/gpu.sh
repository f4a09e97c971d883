#!/usr/bin/env bash
# The GPU check, one script for one call on a GPU machine (CUDA 13 driver, PyTorch with CUDA, no Rust):
# the CUDA kernel tests, then training speed of fbnet against PyTorch eager on the same GPU, identical
# networks (PyTorch's built from the description fbnet prints), fp32 without TF32, seeded random data:
#   1. the super net of the paper's 224 space (all nine candidates in each of 22 layers), batch 64;
#   2. FBNet-B of that space, batch 128.
# GPU memory is the peak of nvidia-smi's memory.used sampled every 100 ms while the process runs (the
# same for both frameworks: the whole process's device memory, context included). Ends with the paper's
# search time at the measured super-net rate: 90 epochs over 100 ImageNet classes (about 128,000 images,
# 80% through weight steps and 20% through θ steps, each a forward and backward pass). Then end to end on
# a synthetic ImageNet-layout folder (benches/make_image_folder.py; the machine reaches no data) with the
# 224 space at 10 classes (the bundle's quick fp32 table): the same short search on the CPU and on the GPU
# (their first-epoch losses must agree), a GPU search interrupted after its first epoch and resumed, and
# `fbnet train` of its result on the GPU. Also the loader's rate alone on all cores (examples/loader_rate).
#
#   benches/gpu-build.sh            # here, where Rust is: builds gpu-bundle/
#   benches/gpu.sh                  # there, from the repository root, gpu-bundle/ carried along
#
# BATCH_SUPER, BATCH_B, STEPS (default 64, 128, 5). Prints everything; writes the table to $OUT when set.
# DEVICE=cpu with a bundle of CPU builds rehearses the script on a machine without a GPU (with small
# BATCH_SUPER, BATCH_B, STEPS, E2E_IMAGES per class and E2E_BATCH).
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=${BUNDLE:-gpu-bundle}
steps=${STEPS:-5}
dev=${DEVICE:-cuda}
export RUST_LIB_BACKTRACE=0   # errors in one line (a panic still prints its backtrace)
# The whole script keeps within BUDGET seconds (default 560; the device tool stops a command at 600):
# every step's timeout is its own limit or what is left, whichever is less, the key figures first.
end=$((SECONDS + ${BUDGET:-560}))
cap() {
    local left=$((end - SECONDS - 5))
    if [ "$left" -lt "$1" ]; then echo $((left > 1 ? left : 1)); else echo "$1"; fi
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=$(command -v python3)
libs=$(find /opt/torch/.venv /usr/local/lib/python3* -path '*nvidia*' -name 'lib*.so*' -printf '%h\n' 2>/dev/null |
    sort -u | paste -sd:)
export LD_LIBRARY_PATH="/usr/local/nvidia/lib64${libs:+:$libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for f in fbnet train_step loader_rate cuda_kernels; do
    "$py" -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' \
        "$bundle/$f.xz" "$work/$f" && chmod +x "$work/$f" || { echo "no $bundle/$f.xz: run benches/gpu-build.sh" >&2; exit 1; }
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$py" -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))'

echo "== CUDA kernels against the CPU kernels"
timeout "$(cap 90)" "$work/cuda_kernels" gpu_ --test-threads=1 2>&1 | tail -n 25

echo "== training speed"
# runs "$@" while sampling the GPU's memory; prints the command's last output line, then the peak MiB
sampled() {
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$work/mem" 2>/dev/null &
    local sampler=$! line
    line=$("$@" 2>"$work/err" | tail -n 1)
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    [ -n "$line" ] || { echo "failed: $*" >&2; tail -n 20 "$work/err" >&2; }
    echo "$line"
    sort -n "$work/mem" | tail -n 1
}
field() { "$py" -c 'import json, sys; print(json.loads(sys.argv[2]).get(sys.argv[1], "nan"))' "$1" "$2"; }
"$work/fbnet" space show --space fbnet-224 --json >"$work/space.json"
table="| case | batch | fbnet img/s | PyTorch img/s | fbnet / PyTorch | GPU MiB fbnet / PyTorch |
|---|---|---|---|---|---|"
super_rate=nan
for c in "super net, 224 space|${BATCH_SUPER:-64}|" "FBNet-B, 224|${BATCH_B:-128}|--builtin fbnet-b"; do
    IFS='|' read -r name batch extra <<<"$c"
    # shellcheck disable=SC2086
    "$work/train_step" "$work/space.json" $extra --describe >"$work/desc.json"
    # shellcheck disable=SC2086
    mapfile -t a < <(sampled timeout "$(cap 150)" "$work/train_step" "$work/space.json" $extra --device "$dev" \
        --batch "$batch" --steps "$steps" --warmup 2)
    mapfile -t b < <(sampled timeout "$(cap 90)" "$py" benches/torch_train_step.py "$work/desc.json" --device "$dev" \
        --batch "$batch" --steps "$steps" --warmup 2 --threads 16)
    echo "$name fbnet: ${a[0]:-}"
    echo "$name torch: ${b[0]:-}"
    ours=$(field images_per_s "${a[0]:-{\}}"); theirs=$(field images_per_s "${b[0]:-{\}}")
    [ "$name" = "super net, 224 space" ] && super_rate=$ours
    table+=$'\n'$("$py" -c 'import sys; o, t = float(sys.argv[3]), float(sys.argv[4])
print(f"| {sys.argv[1]} | {sys.argv[2]} | {o:.1f} | {t:.1f} | {o / t:.3f}x | {sys.argv[5]} / {sys.argv[6]} |")' \
        "$name" "$batch" "$ours" "$theirs" "${a[1]:-nan}" "${b[1]:-nan}")
done
echo "$table"
"$py" -c 'import sys; r = float(sys.argv[1])
print(f"paper search (90 epochs x 128,000 images) at {r:.1f} img/s: {90 * 128000 / r / 3600:.1f} hours on this GPU")' "$super_rate"
[ -n "${OUT:-}" ] && echo "$table" >"$OUT/gpu-table.md"

echo "== the data side alone: 224 px photo augmentation of synthetic 375-562 px JPEGs, all cores"
"$py" benches/make_image_folder.py "$work/photos" --classes 20 --train 40 --val 1 --size 375
timeout "$(cap 30)" "$work/loader_rate" "$work/photos" --workers "$(nproc)"

echo "== end to end: search and train on an image folder, 224 space, 10 classes"
"$py" benches/make_image_folder.py "$work/images" --classes 10 --train "${E2E_IMAGES:-40}" --val 10 --size 160
lut="$bundle/fbnet-224-c10.json"
search=("$work/fbnet" search --lut "$lut" --dtype fp32 --data "$work/images" --batch-size "${E2E_BATCH:-32}" --seed 1)
last_ce() { "$py" -c 'import json, sys; m = [json.loads(l) for l in open(sys.argv[1])]
print(m[int(sys.argv[2])]["train_ce"], m[-1]["images_per_second"], m[-1].get("data_wait_s"), m[-1].get("loader_images_per_second"))' "$@"; }
for d in "$dev" cpu; do
    timeout "$(cap 90)" "${search[@]}" --epochs 1 --device "$d" --out "$work/s-$d" >"$work/s-$d.log" 2>&1 ||
        { echo "search on $d failed:"; tail -n 15 "$work/s-$d.log"; }
    echo "search on $d, epoch 1: train CE, img/s, data wait s, loader img/s: $(last_ce "$work/s-$d/metrics.jsonl" 0 2>&1)"
    [ "$d" = cpu ] && break
done
# interrupted after its first epoch (SIGINT, as Ctrl-C), then resumed to its third
run_limit=$(cap 120)
timeout "$run_limit" "${search[@]}" --epochs 3 --device "$dev" --out "$work/r" >"$work/r.log" 2>&1 &
runner=$!
for _ in $(seq $((run_limit * 5))); do
    [ "$({ wc -l <"$work/r/metrics.jsonl"; } 2>/dev/null || echo 0)" -ge 1 ] && break
    sleep 0.2
done
kill -INT "$runner" 2>/dev/null; wait "$runner"; echo "interrupted with $(wc -l <"$work/r/metrics.jsonl") epoch(s) written"
timeout "$(cap 120)" "$work/fbnet" search --resume "$work/r" --device "$dev" >>"$work/r.log" 2>&1 || tail -n 15 "$work/r.log"
echo "resumed: $(wc -l <"$work/r/metrics.jsonl") epochs written; $(grep -c '^epoch' "$work/r.log") epoch lines"
grep '^epoch\|^warning\|^decided' "$work/r.log"
timeout "$(cap 90)" "$work/fbnet" train "$work/r" --data "$work/images" --epochs 2 --batch-size "${E2E_BATCH:-32}" --device "$dev" \
    --out "$work/t" >"$work/t.log" 2>&1 || { echo "train failed:"; tail -n 15 "$work/t.log"; }
grep '^epoch\|top-1' "$work/t.log" | tail -n 4
if command -v compute-sanitizer >/dev/null && [ $((end - SECONDS)) -gt 40 ]; then
    echo "== the kernel tests under compute-sanitizer (out-of-bounds accesses)"
    timeout "$(cap 60)" compute-sanitizer --tool memcheck "$work/cuda_kernels" gpu_ --test-threads=1 2>&1 | tail -n 8
fi
echo "gpu.sh: $SECONDS s"
exit 0
