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
    recipe = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, sched="onecycle", warmup=0,
                  opt="sgd-nesterov", train_limit=args.train_limit, augs=["crop"], aug_options={"crop": {"padding": 2}},
                  data="fashion-mnist")

    timeline = Timeline()
    with tempfile.TemporaryDirectory() as folder:
        train(RunConfig(**NETWORK, **recipe, trainer="amp", trainer_options={"device": args.device}), run_dir=Path(folder) / "r",
              weights=Path(folder) / "w.safetensors", reporter=timeline)
    zoo_points = timeline.points

    data = zoo.default_registry().get("data", "fashion-mnist").load()(root=data_root())
    if args.train_limit:  # the images zoo's run trained on: the same seeded, class-balanced subset
        data = data.subset(args.train_limit, None, seed=0)
    torch.manual_seed(0)
    model = create_model(NETWORK["model"], num_classes=10, in_chans=1, input_size=32,
                         **NETWORK["model_options"]).to(args.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loader = lab_loader(data, args.batch_size, padding=2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, epochs=args.epochs,
                                                    steps_per_epoch=len(loader))
    lab_points, seconds = [], 0.0
    for _ in range(args.epochs):
        started = time.perf_counter()
        lab_train_epoch(model, loader, optimizer, args.device, scheduler=scheduler)
        seconds += time.perf_counter() - started
        lab_points.append((seconds, lab_evaluate(model, data, args.device)))

    zoo_time, lab_time = first_reaching(zoo_points, args.target), first_reaching(lab_points, args.target)
    fmt = lambda s: f"{s:.0f}" if s is not None else f"not reached in {args.epochs} epochs"  # noqa: E731
    print(f"\nTime to {args.target:.0%} test accuracy on Fashion-MNIST ({len(data.train_labels):,} train / "
          f"{len(data.test_labels):,} test), on {args.device}, "
          f"vgg_bn layout 32,M,64,M,128,M, SGD Nesterov + one-cycle lr {args.lr}, batch {args.batch_size}, "
          f"crop 2; {machine()}\n")
    rows = [["zoo train --amp (batched aug on the device, bf16, channels_last)", fmt(zoo_time),
             f"{max(a for _, a in zoo_points):.2%}"],
            ["lab loop (per-sample transforms, DataLoader 2 workers, fp32)", fmt(lab_time),
             f"{max(a for _, a in lab_points):.2%}"]]
    print(table(["trainer", "seconds of training to reach it", "best accuracy"], rows))
    if zoo_time and lab_time:
        print(f"\nzoo is {lab_time / zoo_time:.1f}x faster to {args.target:.0%}")
    print("\nper epoch (seconds, test accuracy): zoo", [(round(s), round(a, 4)) for s, a in zoo_points])
    print("per epoch (seconds, test accuracy): lab", [(round(s), round(a, 4)) for s, a in lab_points])


if __name__ == "__main__":
    main()
