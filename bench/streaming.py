"""The streaming data path on a generated folder of JPEGs, measured against torchvision's ImageFolder +
DataLoader (same workers, same crop and flip) in the same run:

- decode-and-augment throughput at 224 px (images/s, and the ratio);
- the share of a ResNet-50 training step spent waiting for data;
- peak memory while training on a folder whose decoded size is several times the memory budget,
  against the in-memory path on the same folder;
- the time to the first training step.

    python bench/streaming.py [--files 400] [--first-step-files 10000] [--workers 2]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import machine, table

import zoo
from zoo import Augmenter


def make_folder(root: Path, files: int, classes: int = 4, seed: int = 0) -> Path:
    """``files`` JPEGs of 500x375 (ImageNet's typical size): smooth colour fields, split train/val."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(files):
        split = "val" if (i // classes) % 10 == 0 else "train"
        folder = root / split / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC).save(folder / f"{i}.jpg", quality=90)
    return root


def zoo_rate(folder: Path, workers: int, batch: int, batches: int) -> float:
    data = zoo.default_registry().get("data", "imagefolder").load()(
        root=folder, image_size=224, stream=True, workers=workers)
    augmenter = Augmenter([zoo.default_registry().get("aug", "hflip").load()()], False, data.mean, data.std,
                          data.num_classes)
    order = torch.randperm(len(data.train_labels)).tolist()
    plan = [order[i * batch:(i + 1) * batch] for i in range(batches)]
    started = time.perf_counter()
    for images, labels in data.train_batches(plan, seed=0, epoch=0, device="cpu"):
        augmenter(images, labels)
    return batch * batches / (time.perf_counter() - started)


def torchvision_rate(folder: Path, workers: int, batch: int, batches: int) -> float:
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.25,) * 3)])
    dataset = datasets.ImageFolder(str(folder / "train"), transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         prefetch_factor=4 if workers else None)
    started, seen = time.perf_counter(), 0
    for i, (images, _) in enumerate(loader):
        seen += len(images)
        if i + 1 == batches:
            break
    return seen / (time.perf_counter() - started)


def training_probe(args: list[str]) -> dict:
    """A short ``zoo.train`` in a fresh process: its peak memory, time to the first step, and the share
    of the steps spent waiting for data (reported by the loop's profile of the first epoch)."""
    code = f"""
import json, resource, sys, time
import zoo
started = time.perf_counter()
first = {{}}
class Probe(zoo.SilentReporter):
    def step(self, done, loss, accuracy, rate):
        first.setdefault("seconds", time.perf_counter() - started)
config = zoo.RunConfig(**json.loads(sys.argv[1]))
summary = zoo.train(config, reporter=Probe(), log_every=1, run_dir=sys.argv[2], weights=sys.argv[2] + ".safetensors")
print(json.dumps({{"first_step_s": first["seconds"], "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "data_wait": summary.get("data_wait_share")}}))
"""
    import json

    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--first-step-files", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "photos", args.files)
        batches = int(args.files * 0.9) // args.batch_size
        zoo_rate(folder, args.workers, args.batch_size, 1)  # warm the page cache
        ours, theirs = (zoo_rate(folder, args.workers, args.batch_size, batches),
                        torchvision_rate(folder, args.workers, args.batch_size, batches))
        print("\n## Decode and augment at 224 px\n")
        print(table(["pipeline", "workers", "images/s"], [
            ["torchvision ImageFolder + DataLoader", args.workers, f"{theirs:.0f}"],
            ["zoo streaming (workers decode, device augments)", args.workers, f"{ours:.0f}"],
            ["ratio", "", f"{ours / theirs:.2f}x"]]))

        base = dict(data="datasets:imagefolder", data_dir=str(folder), epochs=1, batch_size=8, augs=["augment:hflip"],
                    train_limit=64, test_limit=16)
        rows = []
        for label, model, options in (
                ("in memory (decoded up front)", "resnet18", {"image_size": 224, "stream": False}),
                ("streaming, budget 1/8 of the decoded size", "resnet18",
                 {"image_size": 224, "budget_gb": args.files * 3 * 224 * 224 / 8 / 2**30}),
                ("streaming, ResNet-50", "resnet50", {"image_size": 224, "stream": True})):
            config = {**base, "model": model, "data_options": {**options, "workers": args.workers}}
            probe = training_probe([json.dumps(config), str(Path(tmp) / f"run{len(rows)}")])
            rows.append([label, model, f"{probe['peak_mb']:.0f}", f"{probe['first_step_s']:.1f}",
                         "" if probe["data_wait"] is None else f"{probe['data_wait']:.0%}"])
        print(f"\n## Training on {args.files} JPEGs at 224 px (64 training images, batch 8)\n")
        print(table(["data path", "model", "peak MB", "first step s", "step time waiting for data"], rows))

        big = make_folder(Path(tmp) / "big", args.first_step_files, seed=1)
        config = {**base, "model": "resnet18", "data_dir": str(big), "train_limit": None, "test_limit": 16,
                  "data_options": {"image_size": 224, "stream": True, "workers": args.workers}}
        config["epochs"] = 1
        probe = training_probe([json.dumps({**config, "train_limit": 64}), str(Path(tmp) / "big-run")])
        print(f"\n## Time to the first step on {args.first_step_files:,} JPEGs (streaming)\n")
        print(table(["files", "first step s", "peak MB"],
                    [[f"{args.first_step_files:,}", f"{probe['first_step_s']:.1f}", f"{probe['peak_mb']:.0f}"]]))


if __name__ == "__main__":
    main()
