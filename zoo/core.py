"""What the core itself provides, registered like any plugin (as ``zoo``): the plain fp32 trainer, so
that ``zoo train`` works with every other plugin disabled."""
from __future__ import annotations

from .hookspecs import hookimpl
from .specs import Trainer


@hookimpl
def trainers():
    return [Trainer("fp32", "zoo.trainer:BaseTrainer",
                    "plain fp32 training (options: channels_last, compile, device)")]
