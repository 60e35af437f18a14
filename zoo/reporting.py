"""What a run tells as it goes (the reporter protocol), and the terminal's reporter: a rich bar per
epoch and a line per finished epoch."""
from __future__ import annotations

from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


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
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, highlight=False)
        self.progress: Progress | None = None
        self.epochs = 0

    def start(self, config, info: dict[str, Any]) -> None:
        self.epochs = config.epochs
        self.console.print(soft_wrap=True, *[
            f"[bold]{config.model}[/] on {config.data}: {info['parameters']:,} parameters, "
            f"{info['train_images']:,} train / {info['test_images']:,} test images, {info['device']} "
            f"{info['precision']}{' channels_last' if info['channels_last'] else ''}; run {info['run_dir']}"])

    def epoch_start(self, epoch: int, steps: int) -> None:
        self.progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{self.epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=self.console, transient=True,
            disable=not self.console.is_terminal)
        self.progress.start()
        self.task = self.progress.add_task("train", total=steps, stats="")

    def step(self, done: int, loss: float, accuracy: float, images_per_s: float) -> None:
        assert self.progress is not None
        self.progress.update(self.task, completed=done,
                             stats=f"loss {loss:.3f}  acc {accuracy:6.2%}  {images_per_s:,.0f} img/s")

    def epoch_end(self, r: dict[str, Any]) -> None:
        if self.progress:
            self.progress.stop()
        self.console.print(soft_wrap=True, *[
            f"epoch {r['epoch']:>3}/{self.epochs}  train loss {r['train_loss']:.4f} acc {r['train_accuracy']:6.2%}  "
            f"test loss {r['test_loss']:.4f} acc {r['test_accuracy']:6.2%}  lr {r['lr']:.2e}  "
            f"{r['seconds']:.1f}s  {r['images_per_s']:,.0f} img/s"])
