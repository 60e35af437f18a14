"""The streaming data path on a generated folder of JPEGs, measured against torchvision's ImageFolder +
DataLoader (same workers, same crop and flip) in the same run:

- decode-and-augment throughput at 224 px (images/s, and the ratio);
- the share of a ResNet-50 training step spent waiting for data;
- peak memory and the time to the first training step on a folder of 10,000 JPEGs whose decoded size
  is eight times the memory budget, against the in-memory path on the same folder.

    python bench/streaming.py [--files 400] [--first-step-files 10000] [--workers 2]
"""
from __future__ import annotations

import argparse
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


def zoo_rate(folder: Path, workers: int, batch: int, batches: int, augment: bool = True) -> float:
    data = zoo.default_registry().get("data", "imagefolder").load()(
        root=folder, image_size=224, stream=True, workers=workers)
    augmenter = Augmenter([zoo.default_registry().get("aug", "hflip").load()()], False, data.mean, data.std,
                          data.num_classes)
    order = torch.randperm(len(data.train_labels)).tolist()
    plan = [order[i * batch:(i + 1) * batch] for i in range(batches)]
    started = time.perf_counter()
    for images, labels in data.train_batches(plan, seed=0, epoch=0, device="cpu"):
        if augment:
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


def decoder_rates(folder: Path, count: int = 200) -> dict[str, float]:
    """Images/s of one process (one thread, as a DataLoader worker) decoding, random-resized-cropping
    and resizing JPEGs to 224 px: PIL, torchvision.io, and zoo's decoder (torchvision.io for JPEGs whose
    crop is small; PIL's draft mode for large ones)."""
    import random

    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as F

    from zoo.data.streaming import Decoder, random_resized_crop

    files = sorted(str(f) for f in (folder / "train").rglob("*.jpg"))[:count]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def pil(i, file):
        with Image.open(file) as image:
            box = random_resized_crop(image.size, random.Random(i))
            np.asarray(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR, box=box))

    def tvio(i, file):
        image = decode_jpeg(read_file(file), mode=ImageReadMode.RGB)
        left, top, right, bottom = random_resized_crop((image.shape[2], image.shape[1]), random.Random(i))
        F.resized_crop(image, int(top), int(left), int(bottom - top), int(right - left), [224, 224], antialias=True)

    decoder = Decoder(files, torch.zeros(len(files), dtype=torch.long), 224, 3, 0.875, (0, 0))
    rates = {}
    for name, decode in (("PIL open, convert, resize", pil), ("torchvision.io decode_jpeg + resized_crop", tvio),
                         ("zoo's decoder", lambda i, file: decoder[i])):
        started = time.perf_counter()
        for i, file in enumerate(files):
            decode(i, file)
        rates[name] = len(files) / (time.perf_counter() - started)
    torch.set_num_threads(threads)
    return rates


def training_probe(args: list[str]) -> dict:
    """A short ``zoo.train`` in a fresh process: its peak memory, time to the first step, and the share
    of the steps spent waiting for data (reported by the loop's profile of the first epoch)."""
    code = """
import json, resource, sys, time
import zoo
started = time.perf_counter()
first = {}
class Probe(zoo.SilentReporter):
    def step(self, done, loss, accuracy, rate):
        first.setdefault("seconds", time.perf_counter() - started)
config = zoo.RunConfig(**json.loads(sys.argv[1]))
summary = zoo.train(config, reporter=Probe(), log_every=1, run_dir=sys.argv[2], weights=sys.argv[2] + ".safetensors")
print(json.dumps({"first_step_s": first["seconds"], "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "data_wait": summary.get("data_wait_share")}))
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
        theirs = torchvision_rate(folder, args.workers, args.batch_size, batches)
        decoded = zoo_rate(folder, args.workers, args.batch_size, batches, augment=False)
        ours = zoo_rate(folder, args.workers, args.batch_size, batches)
        print("\n## Decode and augment at 224 px (RandomResizedCrop, flip, normalise)\n")
        print(table(["pipeline", "workers", "images/s", "vs torchvision"], [
            ["torchvision ImageFolder + DataLoader (all in the workers)", args.workers, f"{theirs:.0f}", "1.00x"],
            ["zoo: workers decode and crop (what a GPU run waits for)", args.workers, f"{decoded:.0f}",
             f"{decoded / theirs:.2f}x"],
            ["zoo: ... then flip and normalise in the main process, on this CPU", args.workers, f"{ours:.0f}",
             f"{ours / theirs:.2f}x"]]))

        rates = decoder_rates(folder)
        pil_rate = next(iter(rates.values()))
        print("\n## One worker (one thread) decoding, cropping and resizing to 224 px\n")
        print(table(["decoder", "images/s", "vs PIL"], [[name, f"{rate:.0f}", f"{rate / pil_rate:.2f}x"]
                                                        for name, rate in rates.items()]))

        base = dict(data="datasets:imagefolder", epochs=1, batch_size=8, augs=["augment:hflip"], test_limit=16)
        probe = training_probe([json.dumps({**base, "model": "resnet50", "data_dir": str(folder), "train_limit": 64,
                                            "data_options": {"image_size": 224, "stream": True,
                                                             "workers": args.workers}}), str(Path(tmp) / "r50")])
        print(f"\n## ResNet-50 at 224 px, batch 8, streamed from {args.files} JPEGs\n")
        print(table(["model", "step time waiting for data"], [["resnet50", f"{probe['data_wait']:.1%}"]]))

        big = make_folder(Path(tmp) / "big", args.first_step_files, seed=1)
        decoded = args.first_step_files * 3 * 224 * 224
        rows = []
        for label, options in (("in memory (decoded up front)", {"stream": False}),
                               ("streaming, budget 1/8 of the decoded size", {"budget_gb": decoded / 8 / 2**30})):
            config = {**base, "model": "resnet18", "data_dir": str(big), "train_limit": 64,
                      "data_options": {"image_size": 224, "workers": args.workers, **options}}
            probe = training_probe([json.dumps(config), str(Path(tmp) / f"big{len(rows)}")])
            rows.append([label, f"{probe['first_step_s']:.1f}", f"{probe['peak_mb']:.0f}"])
        print(f"\n## ResNet-18 on {args.first_step_files:,} JPEGs at 224 px ({decoded / 2**30:.1f} GiB decoded; "
              "64 of them trained, batch 8)\n")
        print(table(["data path", "first step s", "peak MB"], rows))


if __name__ == "__main__":
    main()
