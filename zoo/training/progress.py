"""What a run tells as it goes (the reporter protocol), and the terminal's reporter: a rich bar per
epoch and a line per finished epoch."""
from __future__ import annotations

import time
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from ..base.text import counted


class Reporter(Protocol):
    def start(self, config, info: dict[str, Any]) -> None: ...
    def epoch_start(self, epoch: int, steps: int) -> None: ...
    def step(self, done: int, loss: float, accuracy: float, images_per_s: float) -> None: ...
    def epoch_end(self, record: dict[str, Any]) -> None: ...
    def finish(self, summary: dict[str, Any]) -> None: ...


class SilentReporter:
    """A reporter that says nothing: the base of reporters that only need some of the calls."""

    def start(self, config, info): pass
    def epoch_start(self, epoch, steps): pass
    def step(self, done, loss, accuracy, images_per_s): pass
    def epoch_end(self, record): pass
    def finish(self, summary): pass


class RichReporter(SilentReporter):
    """On a terminal, a bar per epoch with its ETA; elsewhere (a SLURM log, ``| tee``, CI) a plain line
    every ``interval`` seconds with the ETA of the epoch and the run, since a bar draws nothing there.
    Both say, after the first steps, how long the run should take."""

    def __init__(self, console: Console | None = None, interval: float = 30.0):
        self.console = console or Console(stderr=True, highlight=False)
        self.interval = interval
        self.progress: Progress | None = None
        self.epochs = self.epoch = self.steps = self.batch = 0
        self.last_line = 0.0
        self.estimated = False

    def start(self, config, info: dict[str, Any]) -> None:
        self.epochs, self.steps, self.batch = config.epochs, info["steps_per_epoch"], info["batch_size"]
        processes = f" in {counted(info['processes'], 'process')}" if info.get("processes", 1) > 1 else ""
        self.console.print(soft_wrap=True, *[
            f"[bold]{config.model}[/] on {config.data.rpartition(':')[2]}: {info['parameters']:,} parameters, "
            f"{info['train_images']:,} train / {info['test_images']:,} test images, {info['device']} "
            f"{info['precision']}{' channels_last' if info['channels_last'] else ''}{processes}; "
            f"{counted(config.epochs, 'epoch')} of {self.steps:,} steps (batch {self.batch:,}); run {info['run_dir']}"])
        resumed = info.get("resumed_at")
        if resumed and resumed["epoch"] >= self.epochs:
            self.console.print(f"the run has trained its {counted(self.epochs, 'epoch')}: nothing is left to train "
                               f"(--epochs N extends it)", soft_wrap=True)
        elif resumed:
            self.console.print(f"resuming at epoch {resumed['epoch'] + 1}/{self.epochs}, step {resumed['step']}/"
                               f"{self.steps:,}", soft_wrap=True)
        started_from = info.get("started_from")
        if started_from:
            self.console.print(soft_wrap=True, *[
                f"starting from {started_from['weights']}" + "".join(f"; {note}" for note in started_from["notes"])
                + (f"; they were trained at {started_from['input_size']} px" if started_from.get("input_size") else "")
                + (f"; {started_from['classifier']} trains alone for {counted(config.freeze_epochs, 'epoch')}"
                   if config.freeze_epochs else "")])

    @property
    def live(self) -> bool:
        """Whether a bar can be drawn: a terminal, or a notebook's output cell."""
        return self.console.is_terminal or self.console.is_jupyter

    def epoch_start(self, epoch: int, steps: int) -> None:
        self.epoch, self.started = epoch, time.monotonic()
        self.last_line = self.started
        self.progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{self.epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=True, disable=not self.live)
        self.progress.start()
        self.task = self.progress.add_task("train", total=steps, stats="")

    def step(self, done: int, loss: float, accuracy: float, images_per_s: float) -> None:
        assert self.progress is not None
        stats = f"loss {loss:.3f}  acc {accuracy:6.2%}  {images_per_s:,.0f} img/s"
        self.progress.update(self.task, completed=done, stats=stats)
        epoch_left = (self.steps - done) * self.batch / images_per_s if images_per_s else 0.0
        run_left = epoch_left + (self.epochs - self.epoch - 1) * self.steps * self.batch / max(images_per_s, 1e-9)
        if not self.estimated:
            self.estimated = True
            per_epoch = self.steps * self.batch / max(images_per_s, 1e-9)
            self.console.print(f"estimated after {done} steps: {_clock(per_epoch)} per epoch of training, "
                               f"{_clock(run_left)} to go (evaluation not counted)", soft_wrap=True)
        now = time.monotonic()
        if not self.live and now - self.last_line >= self.interval:
            self.last_line = now
            self.console.print(soft_wrap=True, *[
                f"epoch {self.epoch + 1}/{self.epochs}  step {done}/{self.steps}  {stats}  "
                f"ETA {_clock(epoch_left)} (epoch), {_clock(run_left)} (run)"])

    def epoch_end(self, r: dict[str, Any]) -> None:
        if self.progress:
            self.progress.stop()
        self.console.print(soft_wrap=True, *[
            f"epoch {r['epoch']:>3}/{self.epochs}  train loss {r['train_loss']:.4f} acc {r['train_accuracy']:6.2%}  "
            f"test loss {r['test_loss']:.4f} acc {r['test_accuracy']:6.2%}  lr {r['lr']:.2e}  "
            f"{r['seconds']:.1f}s  {r['images_per_s']:,.0f} img/s"])


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Reporters(SilentReporter):
    """Several reporters as one. A reporter that raises (a tracker without a network, say) is reported
    once and dropped: a logger never costs a run."""

    def __init__(self, reporters: dict[str, Any], warn=None):
        self.reporters = dict(reporters)
        self.warn = warn or (lambda message: Console(stderr=True).print(f"zoo: warning: {message}", soft_wrap=True))

    def _each(self, method: str, *args: Any) -> None:
        for name, reporter in list(self.reporters.items()):
            try:
                getattr(reporter, method)(*args)
            except Exception as exc:  # noqa: BLE001 - any failure of a logger, reported and dropped
                del self.reporters[name]
                self.warn(f"logger {name!r} failed in {method}() ({type(exc).__name__}: {exc}); the run goes on "
                          "without it")

    def start(self, config, info): self._each("start", config, info)
    def epoch_start(self, epoch, steps): self._each("epoch_start", epoch, steps)
    def step(self, done, loss, accuracy, images_per_s): self._each("step", done, loss, accuracy, images_per_s)
    def epoch_end(self, record): self._each("epoch_end", record)
    def finish(self, summary): self._each("finish", summary)
