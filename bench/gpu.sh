#!/usr/bin/env bash
# The benchmark tables on a CUDA machine, in under 5 minutes. Run from the repository root with the
# project installed (pip install -e .). Prints Markdown tables; paste them into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
timeout 180 python throughput.py --device cuda --steps 100 --rounds 2 --formats
timeout 60 python augment.py --device cuda --batches 50
timeout 60 python startup.py --repeat 3
