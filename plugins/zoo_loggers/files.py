"""Loggers that write into the run folder."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from zoo import SilentReporter, UserError


class CsvLogger(SilentReporter):
    """A row per epoch in ``<run>/metrics.csv`` (what metrics.jsonl holds, for spreadsheets)."""

    def start(self, config, info: dict[str, Any]) -> None:
        self.path = Path(info["run_dir"]) / "metrics.csv"

    def epoch_end(self, record: dict[str, Any]) -> None:
        new = not self.path.exists() or record["epoch"] == 1
        with open(self.path, "w" if new else "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(record), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(record)


class TensorBoardLogger(SilentReporter):
    """Train loss and accuracy at every log step, test loss and accuracy and the learning rate per
    epoch, in ``<run>/tensorboard`` (``tensorboard --logdir runs``)."""

    def __init__(self, flush_secs: int = 30):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("the tensorboard logger needs TensorBoard: pip install 'cnn-zoo[tensorboard]'") from None
        self.writer_type, self.flush_secs = SummaryWriter, flush_secs
        self.epoch = self.steps = 0

    def start(self, config, info: dict[str, Any]) -> None:
        self.steps = info["steps_per_epoch"]
        self.writer = self.writer_type(str(Path(info["run_dir"]) / "tensorboard"), flush_secs=self.flush_secs)

    def epoch_start(self, epoch: int, steps: int) -> None:
        self.epoch = epoch

    def step(self, done: int, loss: float, accuracy: float, images_per_s: float) -> None:
        step = self.epoch * self.steps + done
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/accuracy", accuracy, step)
        self.writer.add_scalar("train/images_per_s", images_per_s, step)

    def epoch_end(self, record: dict[str, Any]) -> None:
        for key in ("test_loss", "test_accuracy", "lr", "train_loss", "train_accuracy"):
            self.writer.add_scalar(f"epoch/{key}", record[key], record["epoch"])
        self.writer.flush()

    def finish(self, summary: dict[str, Any]) -> None:
        self.writer.close()
