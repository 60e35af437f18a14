#!/usr/bin/env bash
# The benchmark tables on a CUDA machine (about 6-8 minutes by estimate; never measured). Run from the repository root with the
# project installed (pip install -e .). Prints Markdown tables; paste them into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
timeout 180 python throughput.py --device cuda --steps 100 --rounds 2 --formats
timeout 60 python augment.py --device cuda --batches 50
timeout 60 python startup.py --repeat 3
# The time-to-94% recipe: wall time and accuracy in comparisons/resnet18-94/results.md (goal: under 2 minutes).
timeout 300 bash -c 'cd .. && time zoo compare experiments/resnet18-94.toml --out /tmp/zoo-resnet18-94'
