"""Peak memory (RSS) of a training run: `zoo train` vs the lab's loop, each in its own process.

    python bench/memory.py [--model resnet18] [--images 10240]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import machine, table

CHILD = r"""
import json, resource, sys, tempfile
from pathlib import Path
sys.path.insert(0, {bench!r})
from common import random_cifar, registry_with, lab_evaluate, lab_loader, lab_train_epoch
import torch
from zoo.models import create_model
from zoo.training import RunConfig, train
data = random_cifar({images})
if {kind!r} == "lab":
    model = create_model({model!r}, num_classes=10, input_size=32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    lab_train_epoch(model, lab_loader(data, 128), optimizer, "cpu", max_steps={steps})
    lab_evaluate(model, data, "cpu", batch_size=512)
else:
    with tempfile.TemporaryDirectory() as folder:
        train(RunConfig(model={model!r}, data="bench", epochs=1, batch_size=128, trainer={kind!r},
                        train_limit={steps} * 128, test_limit=512),
              registry=registry_with(data), run_dir=Path(folder) / "r", weights=Path(folder) / "w.safetensors")
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def peak_mib(kind: str, model: str, images: int, steps: int) -> float:
    """Peak RSS of the training process, in MiB, measured by the process itself."""
    code = CHILD.format(bench=str(Path(__file__).parent), images=images, kind=kind, model=model, steps=steps)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=10240)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for kind, label in (("fp32", "zoo train fp32"), ("amp", "zoo train --amp"), ("lab", "lab loop, DataLoader 2 workers")):
        rows.append([label, f"{peak_mib(kind, args.model, args.images, args.steps):,.0f}"])
    print(f"\nPeak RSS of the training process, {args.model} CIFAR shape, batch 128, {args.images:,} images held, "
          f"{args.steps} steps, then evaluation of 512 images at batch 512; {machine()}\n")
    print(table(["trainer", "peak RSS of the main process (MiB)"], rows))
    print("\nThe lab loop's two DataLoader workers are separate processes with their own memory, not counted here.")


if __name__ == "__main__":
    main()
