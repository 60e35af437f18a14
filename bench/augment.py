"""The augmentation pipeline alone: zoo's batched crop+flip+normalise vs the per-sample torchvision
pipeline through a DataLoader (the lab's), in images/s, and the share of a training step each costs.

    python bench/augment.py [--batches 20] [--device cuda]
"""
from __future__ import annotations

import argparse
import time

import torch

from common import lab_loader, machine, random_cifar, table

import zoo
from zoo import Augmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    n = args.batches * args.batch_size
    data = random_cifar(n)
    registry = zoo.default_registry()
    augs = [registry.get("aug", name).load()() for name in ("crop", "hflip")]
    augmenter = Augmenter(augs, False, data.mean, data.std, 10)
    images, labels = data.train_images.to(args.device), data.train_labels.to(args.device)

    def synchronize() -> None:  # CUDA runs ahead of the host: wait before reading the clock
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def zoo_pass() -> None:
        order = torch.randperm(n, device=args.device)
        for i in range(args.batches):
            batch = order[i * args.batch_size:(i + 1) * args.batch_size]
            x, _ = augmenter(images[batch], labels[batch])
        synchronize()

    zoo_pass()  # warm up
    started = time.perf_counter()
    zoo_pass()
    zoo_rate = n / (time.perf_counter() - started)

    rates = {}
    for workers in (0, 2):
        loader = lab_loader(data, args.batch_size, workers=workers)
        for _ in loader:  # warm up (worker start-up)
            break
        started = time.perf_counter()
        for x, y in loader:
            x.to(args.device)
        rates[workers] = n / (time.perf_counter() - started)

    # A training step of resnet18 (zoo, amp) for scale: what share of it would each pipeline take?
    model = zoo.create_model("resnet18", num_classes=10, input_size=32).to(args.device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(args.batch_size, 3, 32, 32, device=args.device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,), device=args.device)

    def step() -> None:
        with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    synchronize()  # the warm-up step must not be timed
    started = time.perf_counter()
    for _ in range(3):
        step()
    synchronize()
    step_s = (time.perf_counter() - started) / 3

    def share(rate: float) -> str:
        augment_s = args.batch_size / rate
        return f"{augment_s / (augment_s + step_s):.1%}"

    print(f"\nAugmentation (random crop, pad 4 + horizontal flip + normalise), batch {args.batch_size}; {machine()}\n")
    print(table(["pipeline", "images/s", "vs per-sample, 2 workers", "share of a resnet18 amp step"], [
        ["zoo batched, on the device", f"{zoo_rate:,.0f}", f"{zoo_rate / rates[2]:.1f}x", share(zoo_rate)],
        ["torchvision per sample, DataLoader 2 workers", f"{rates[2]:,.0f}", "1.0x", share(rates[2])],
        ["torchvision per sample, DataLoader 0 workers", f"{rates[0]:,.0f}", f"{rates[0] / rates[2]:.1f}x",
         share(rates[0])],
    ]))
    print(f"\n(one resnet18 training step, batch {args.batch_size}, bf16 autocast: {step_s * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
