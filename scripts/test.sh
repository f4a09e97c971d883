#!/usr/bin/env bash
# Runs every test of the workspace on a fresh Debian machine: installs what the tests need (the ONNX
# Runtime library from PyPI into fbnet's cache folder, Debian's Fashion-MNIST package; the bridge tests
# fetch the Kotlin compiler from npm), then builds and runs the suite and the bridge tests, and closes with
# one line counting every test of every test binary and bridge suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-ort.sh
# Fashion-MNIST for the dataset, training and export tests.
scripts/setup-fashion-mnist.sh
# Some tests time real ONNX Runtime sessions and compare timings; other tests running beside them on a
# 2-core machine would distort what they measure, so test functions run one at a time.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-1}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
# the phone bridges: uniffi from Python, the JNI facade from a JVM
scripts/test-bridges.sh 2>&1 | tee -a "$log"
awk '/^test result:/ { p += $4; f += $6 } END { print "tests: " p " passed, " f " failed" }' "$log"
