#!/usr/bin/env bash
# Runs every test of the workspace on a fresh Debian machine: installs what the tests need (the ONNX
# Runtime library from PyPI into fbnet's cache folder), then builds and runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-ort.sh
cargo test --workspace --locked "$@"
