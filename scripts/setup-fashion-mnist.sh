#!/usr/bin/env bash
# Installs Fashion-MNIST from Debian's package `dataset-fashion-mnist` (IDX files under
# /usr/share/datasets/fashion-mnist), as root or through sudo; nothing to do when it is there or when
# FBNET_FASHION_MNIST names a folder holding the IDX files.
set -euo pipefail
if [ -n "${FBNET_FASHION_MNIST:-}" ] || [ -d /usr/share/datasets/fashion-mnist ]; then
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get install -y --no-install-recommends dataset-fashion-mnist >/dev/null ||
    { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends dataset-fashion-mnist >/dev/null; }
