#!/usr/bin/env bash
# The GPU check, from a bare copy of the repository on a CUDA machine that has its own PyTorch,
# torchvision, timm, pluggy, click, safetensors, rich, matplotlib and numpy, and no package index:
#   bash bench/gpu.sh --fashion-mnist DIR                        (DIR: Fashion-MNIST's four idx files)
#   bash bench/gpu.sh --fashion-mnist DIR --device cpu --quick   (the same script here, in about a minute)
# Prints one Markdown section for docs/benchmarks.md on stdout (progress on stderr); under 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# zoo into the machine's own Python: no index, no dependencies (the machine's own are used), no build env.
# Where pip cannot (no pip, an old setuptools), gpu.py runs zoo from this tree instead.
if ! "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e . >&2; then
  echo "gpu.sh: pip could not install zoo here; bench/gpu.py runs it from the source tree" >&2
fi
exec "$PYTHON" bench/gpu.py "$@"
