"""Peak memory (RSS) of a training run: `zoo train` vs the lab's loop, each in its own process.

    python bench/memory.py [--model resnet18] [--images 10240]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from common import machine, table

CHILD = r"""
import json, resource, sys, tempfile
from pathlib import Path
sys.path.insert(0, {bench!r})
from common import random_cifar, registry_with, lab_evaluate, lab_loader, lab_train_epoch
import torch
from zoo import create_model
from zoo import RunConfig, train
data = random_cifar({images})
if {kind!r} == "lab":
    model = create_model({model!r}, num_classes=10, input_size=32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model = model.to({device!r})
    lab_train_epoch(model, lab_loader(data, 128), optimizer, {device!r}, max_steps={steps})
    lab_evaluate(model, data, {device!r}, batch_size=512)
else:
    with tempfile.TemporaryDirectory() as folder:
        train(RunConfig(model={model!r}, data="bench", epochs=1, batch_size=128, trainer={kind!r},
                        train_limit={steps} * 128, test_limit=512, trainer_options={{"device": {device!r}}}),
              registry=registry_with(data), run_dir=Path(folder) / "r", weights=Path(folder) / "w.safetensors")
gpu = torch.cuda.max_memory_allocated() if {device!r}.startswith("cuda") else 0
print(json.dumps([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, gpu]))
"""


def peak_mib(kind: str, model: str, images: int, steps: int, device: str) -> tuple[float, float]:
    """Peak RSS and peak CUDA memory of the training process, in MiB, measured by the process itself."""
    code = CHILD.format(bench=str(Path(__file__).parent), images=images, kind=kind, model=model, steps=steps,
                        device=device)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rss_kib, gpu_bytes = json.loads(result.stdout.strip().splitlines()[-1])
    return rss_kib / 1024, gpu_bytes / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=10240)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="Both sides train on this device.")
    args = parser.parse_args()
    rows = []
    for kind, label in (("fp32", "zoo train fp32"), ("amp", "zoo train --amp"), ("lab", "lab loop, DataLoader 2 workers")):
        rss, gpu = peak_mib(kind, args.model, args.images, args.steps, args.device)
        rows.append([label, f"{rss:,.0f}"] + ([f"{gpu:,.0f}"] if args.device.startswith("cuda") else []))
    print(f"\nPeak memory of the training process on {args.device}, {args.model} CIFAR shape, batch 128, "
          f"{args.images:,} images held, {args.steps} steps, then evaluation of 512 images at batch 512; {machine()}\n")
    columns = ["trainer", "peak RSS of the main process (MiB)"]
    print(table(columns + (["peak CUDA memory (MiB)"] if args.device.startswith("cuda") else []), rows))
    print("\nThe lab loop's two DataLoader workers are separate processes with their own memory, not counted here.")


if __name__ == "__main__":
    main()
