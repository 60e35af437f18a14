"""Training throughput (images/s over steady-state steps) of CIFAR-shape networks at batch 128:
the lab's loop vs `zoo train` fp32 vs `zoo train --amp`, measured in the same run.

    python bench/throughput.py [--steps 12] [--rounds 3] [--formats] [--compile] [--models resnet18,vgg16,se-resnet18] [--device cuda]

Each model's setups are measured in turn, and the turn is repeated ``--rounds`` times; the table
shows the median of each, so a machine that slows down or speeds up during the run (a shared cloud
CPU does) shifts every column alike instead of the one measured last.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from common import StepClock, lab_loader, lab_train_epoch, machine, random_cifar, registry_with, table

from zoo import create_model
from zoo import RunConfig, train


WARMUP_STEPS = 5  # untimed: allocator, oneDNN primitive caches, torch.compile; zoo logs every this many


def lab_images_per_s(name: str, data, steps: int, batch: int, device: str) -> float:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, input_size=32).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    clock = StepClock(batch)
    lab_train_epoch(model, lab_loader(data, batch), optimizer, device, max_steps=steps + WARMUP_STEPS,
                    on_step=clock.mark)
    return clock.images_per_s(WARMUP_STEPS)


def zoo_images_per_s(name: str, registry, steps: int, batch: int, trainer: str, device: str, **trainer_options) -> float:
    clock = StepClock(batch)
    config = RunConfig(model=name, data="bench", epochs=1, batch_size=batch, trainer=trainer, warmup=0,
                       trainer_options={"device": device, **trainer_options},
                       train_limit=(steps + WARMUP_STEPS) * batch,
                       test_limit=256)
    with tempfile.TemporaryDirectory() as folder:
        train(config, registry=registry, run_dir=Path(folder) / "run", weights=Path(folder) / "w.safetensors",
              reporter=clock, log_every=WARMUP_STEPS)  # a host sync per log step, not per step
    return clock.images_per_s(WARMUP_STEPS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3, help="Measure every setup this many times; report medians.")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--models", default="resnet18,vgg16,se-resnet18")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--formats", action="store_true", help="Also measure both memory formats per precision.")
    parser.add_argument("--compile", action="store_true", help="Also measure both trainers with torch.compile.")
    args = parser.parse_args()
    data = random_cifar((args.steps + WARMUP_STEPS) * args.batch_size)
    registry = registry_with(data)
    rows = []
    for name in args.models.split(","):
        setups = [lambda: lab_images_per_s(name, data, args.steps, args.batch_size, args.device)]
        setups += [lambda trainer=trainer: zoo_images_per_s(name, registry, args.steps, args.batch_size, trainer,
                                                            args.device) for trainer in ("fp32", "amp")]
        if args.formats:  # each trainer in the memory format it does not choose by default
            setups += [lambda trainer=trainer, default=default: zoo_images_per_s(
                name, registry, args.steps, args.batch_size, trainer, args.device, channels_last=not default)
                for trainer, default in (("fp32", args.device == "cpu"), ("amp", True))]
        if args.compile:  # compiling happens in the first steps, which are not timed
            setups += [lambda trainer=trainer: zoo_images_per_s(name, registry, args.steps, args.batch_size, trainer,
                                                                args.device, compile=True) for trainer in ("fp32", "amp")]
        rounds = [[measure() for measure in setups] for _ in range(args.rounds)]
        lab, fp32, amp, *others = [statistics.median(column) for column in zip(*rounds)]
        rows.append([name, f"{lab:,.0f}", f"{fp32:,.0f} ({fp32 / lab:.2f}x)", f"{amp:,.0f} ({amp / lab:.2f}x)",
                     *(f"{other:,.0f}" for other in others)])
        print(f"{name}: done", flush=True)
    cpu = args.device == "cpu"
    # The trainers' default memory formats: on CPUs both alike, on CUDA channels_last for amp only.
    fp32_format, amp_format = (("channels_last, maps under 8x8 contiguous",) * 2 if cpu
                               else ("contiguous", "channels_last"))
    headers = ["model", "lab loop fp32 (img/s)", f"zoo train fp32 ({fp32_format})", f"zoo train --amp ({amp_format})"]
    if args.formats:
        headers += [f"zoo fp32 ({'contiguous' if cpu else 'channels_last'})", "zoo amp (contiguous)"]
    if args.compile:
        headers += ["zoo fp32 --compile", "zoo amp --compile"]
    print(f"\nTraining throughput, CIFAR shape, batch {args.batch_size}, median of {args.rounds} rounds of "
          f"{args.steps} steady-state steps; {machine()}\n")
    print(table(headers, rows))


if __name__ == "__main__":
    main()
