"""Time to accuracy on the real Fashion-MNIST: seconds of training until the test accuracy first
reaches the target (91 %), zoo's best CPU recipe vs the lab's loop with the same network and recipe.

    python bench/time_to_accuracy.py [--target 0.91] [--epochs 10] [--train-limit N]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import lab_evaluate, lab_loader, lab_train_epoch, machine, table

import zoo
from zoo.data.images import data_root
from zoo import create_model
from zoo import RunConfig, SilentReporter, train

NETWORK = {"model": "vgg_bn", "model_options": {"layout": "32,M,64,M,128,M"}}


class Timeline(SilentReporter):
    """Seconds of training and test accuracy after each epoch."""

    def __init__(self):
        self.seconds, self.points = 0.0, []

    def epoch_end(self, record):
        self.seconds += record["seconds"]
        self.points.append((self.seconds, record["test_accuracy"]))


def first_reaching(points, target):
    return next((seconds for seconds, accuracy in points if accuracy >= target), None)


def zoo_points(config: RunConfig) -> list[tuple[float, float]]:
    """(seconds of training, test accuracy) after each epoch of `zoo train`."""
    timeline = Timeline()
    with tempfile.TemporaryDirectory() as folder:
        train(config, run_dir=Path(folder) / "r", weights=Path(folder) / "w.safetensors", reporter=timeline)
    return timeline.points


def lab_points(config: RunConfig, device: str, target: float | None = None,
               seconds: float | None = None) -> tuple[list[tuple[float, float]], int]:
    """The same after each epoch of the lab's loop with ``config``'s network, data, SGD Nesterov and
    one-cycle rate, crop padding and flips; it stops once ``target`` is reached or ``seconds`` of
    training are spent. Also returns the number of training images."""
    data = zoo.default_registry().get("data", config.data).load()(root=data_root(config.data_dir))
    if config.train_limit or config.test_limit:  # what zoo's run trained on: the same seeded, class-balanced subset
        data = data.subset(config.train_limit, config.test_limit, seed=config.seed)
    torch.manual_seed(config.seed)
    model = create_model(config.model, num_classes=data.num_classes, in_chans=data.channels,
                         input_size=data.input_size, **config.model_options).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                                weight_decay=config.weight_decay)
    loader = lab_loader(data, config.batch_size, padding=config.aug_options.get("crop", {}).get("padding", 4))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, epochs=config.epochs,
                                                    steps_per_epoch=len(loader))
    points, spent = [], 0.0
    for _ in range(config.epochs):
        started = time.perf_counter()
        lab_train_epoch(model, loader, optimizer, device, scheduler=scheduler)
        spent += time.perf_counter() - started
        points.append((spent, lab_evaluate(model, data, device)))
        if (target and points[-1][1] >= target) or (seconds and spent >= seconds):
            break
    return points, len(data.train_labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", type=float, default=0.91)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--train-limit", type=int, help="Train both on the same class-balanced N images (a quick look).")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="Both sides train on this device.")
    args = parser.parse_args()
    config = RunConfig(**NETWORK, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, sched="onecycle",
                       warmup=0, opt="sgd-nesterov", train_limit=args.train_limit, augs=["crop"],
                       aug_options={"crop": {"padding": 2}}, data="fashion-mnist", trainer="amp",
                       trainer_options={"device": args.device})
    zoo_timeline = zoo_points(config)
    lab_timeline, images = lab_points(config, args.device)

    zoo_time, lab_time = first_reaching(zoo_timeline, args.target), first_reaching(lab_timeline, args.target)
    fmt = lambda s: f"{s:.0f}" if s is not None else f"not reached in {args.epochs} epochs"  # noqa: E731
    print(f"\nTime to {args.target:.0%} test accuracy on Fashion-MNIST ({images:,} train images), on {args.device}, "
          f"vgg_bn layout 32,M,64,M,128,M, SGD Nesterov + one-cycle lr {args.lr}, batch {args.batch_size}, "
          f"crop 2; {machine()}\n")
    rows = [["zoo train --amp (batched aug on the device, bf16, channels_last)", fmt(zoo_time),
             f"{max(a for _, a in zoo_timeline):.2%}"],
            ["lab loop (per-sample transforms, DataLoader 2 workers, fp32)", fmt(lab_time),
             f"{max(a for _, a in lab_timeline):.2%}"]]
    print(table(["trainer", "seconds of training to reach it", "best accuracy"], rows))
    if zoo_time and lab_time:
        print(f"\nzoo is {lab_time / zoo_time:.1f}x faster to {args.target:.0%}")
    print("\nper epoch (seconds, test accuracy): zoo", [(round(s), round(a, 4)) for s, a in zoo_timeline])
    print("per epoch (seconds, test accuracy): lab", [(round(s), round(a, 4)) for s, a in lab_timeline])


if __name__ == "__main__":
    main()
