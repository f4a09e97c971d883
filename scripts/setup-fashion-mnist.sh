#!/usr/bin/env bash
# Installs Fashion-MNIST from Debian's package `dataset-fashion-mnist` (IDX files under
# /usr/share/datasets/fashion-mnist); nothing to do when it is there or when FBNET_FASHION_MNIST names a
# folder holding the IDX files.
set -euo pipefail
if [ -n "${FBNET_FASHION_MNIST:-}" ] || [ -d /usr/share/datasets/fashion-mnist ]; then
    exit 0
fi
"$(dirname "$0")/apt-install.sh" dataset-fashion-mnist
