#!/usr/bin/env bash
# Puts ONNX Runtime (the official PyPI wheel, native library only) into fbnet's cache folder, once.
# The Rust code looks for it there unless ORT_DYLIB_PATH names another library.
set -euo pipefail
version=1.31.1
cache="${FBNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fbnet}"
dir="$cache/onnxruntime-$version"
if [ -n "${ORT_DYLIB_PATH:-}" ]; then
    echo "using ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
    exit 0
fi
if ! compgen -G "$dir/onnxruntime/capi/libonnxruntime.*" >/dev/null; then
    echo "fetching onnxruntime==$version from PyPI into $dir"
    rm -rf "$dir.partial"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
        --target "$dir.partial" "onnxruntime==$version"
    mv "$dir.partial" "$dir"
fi
echo "ONNX Runtime $version: $(compgen -G "$dir/onnxruntime/capi/libonnxruntime.*" | head -n 1)"
