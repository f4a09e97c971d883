#!/usr/bin/env bash
# Builds what benches/gpu.sh runs on a GPU machine, with the `cuda` feature, into gpu-bundle/ (ignored by
# git): the fbnet binary, the train_step and loader_rate examples and the CUDA kernel tests, stripped and xz-compressed
# (about 6 MB each; the device tool carries at most 64 MiB with the tree), and a quick fp32 latency table
# of the 224 space at 10 classes for its end-to-end run (profiled here with the CPU build and ONNX
# Runtime, which the GPU machine's image lacks for us). Run it where you build:
#
#   benches/gpu-build.sh        # nvcc on the PATH (a CUDA toolkit), or our GPU-less machines, where it
#                               # sources ../shared/tools/cuda-build-env.sh (CUDA 13.0 from PyPI wheels)
#
# CUDA_COMPUTE_CAP picks the GPU (default 90: H100 and H200). The build has its own target folder
# (target/cuda, CUDA_TARGET to change) so that the CPU build is not rebuilt after it; a first build takes
# about 8 minutes on 2 cores (candle's kernels), later ones a minute or two.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null; then
    env_script=../shared/tools/cuda-build-env.sh
    [ -f "$env_script" ] || { echo "gpu-build: no nvcc on the PATH (install a CUDA toolkit)" >&2; exit 1; }
    # shellcheck disable=SC1090
    source "$env_script" >/dev/null
fi
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${CUDA_TARGET:-target/cuda}"
cargo build --release --locked -p fbnet --features cuda --bin fbnet --example train_step \
    --example loader_rate
tests=$(cargo test --release --locked -p fbnet --features cuda --test cuda_kernels --no-run \
    --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda_kernels":
        print(m["executable"])')
mkdir -p gpu-bundle
for pair in "fbnet:$CARGO_TARGET_DIR/release/fbnet" "train_step:$CARGO_TARGET_DIR/release/examples/train_step" \
    "loader_rate:$CARGO_TARGET_DIR/release/examples/loader_rate" "cuda_kernels:$tests"; do
    name=${pair%%:*}
    strip -o "gpu-bundle/$name" "${pair#*:}"
    xz -f -T0 -6 "gpu-bundle/$name"
done
CARGO_TARGET_DIR=target cargo build --release --locked -q -p fbnet --bin fbnet
[ -f gpu-bundle/fbnet-224-c10.json ] ||
    target/release/fbnet profile --space fbnet-224 --classes 10 --dtype fp32 --quick \
        --out gpu-bundle/fbnet-224-c10.json
ls -l gpu-bundle
