"""What the core itself provides, registered like any plugin (as ``zoo``): the plain fp32 trainer and
the console logger, so that ``zoo train`` works with every other plugin disabled."""
from __future__ import annotations

from .hooks import hookimpl
from .specs import Logger, Trainer


@hookimpl
def trainers():
    return [Trainer("fp32", "zoo.training.trainer:BaseTrainer",
                    "plain fp32 training (options: channels_last, compile, device)")]


@hookimpl
def loggers():
    return [Logger("console", "zoo.training.progress:RichReporter", "a bar with an ETA in a terminal, plain lines elsewhere; "
                   "a line per epoch (always on in zoo train)")]
