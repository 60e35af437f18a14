"""What the commands share: the registry, the console, common options, which rank prints."""
from __future__ import annotations

import os

import click

DEBUG_ENV = "ZOO_DEBUG"
NPROC_ENV = "ZOO_NPROC"  # set for the workers `zoo train --nproc N` launches


def registry():
    from ..registry import default_registry

    return default_registry()


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def set_option(function):
    return click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                        help="An architecture option (width=0.5, layers=[2,2,2,2]) or, as wrapper.key, "
                             "a wrapper option (se.reduction=8). Repeatable.")(function)


def data_dir_option(function):
    return click.option("--data-dir", type=click.Path(file_okay=False),
                        help="Where data lives (default $ZOO_DATA_DIR or ~/.cache/zoo/data; for imagefolder, "
                             "the folder itself).")(function)


def is_rank0() -> bool:
    """Rank 0 prints for all under torchrun: the ranks finish, and stop for Ctrl-C, together."""
    return os.environ.get("RANK", "0") == "0"


def prints_errors() -> bool:
    """Under `--nproc` every rank meets the same error (same command, same disk, collective checks),
    so rank 0 alone prints it; under a torchrun of your own a node may differ, so every rank does."""
    return is_rank0() or NPROC_ENV not in os.environ
