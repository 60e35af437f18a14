"""What the commands share: the registry, the console, common options, which rank prints."""
from __future__ import annotations

import os

import click

from ..base.version import __version__

DEBUG_ENV = "ZOO_DEBUG"
NPROC_ENV = "ZOO_NPROC"  # set for the workers `zoo train --nproc N` launches


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True,
             no_args_is_help=False)
@click.version_option(__version__, "--version", prog_name="zoo")
@click.option("--debug", is_flag=True, help=f"Show tracebacks of errors (or set {DEBUG_ENV}=1).")
@click.pass_context
def cli(context: click.Context, debug: bool) -> None:
    """A model zoo and trainer for VGG, ResNet and Squeeze-and-Excitation networks.

    \b
    zoo list '*resnet*'           what is installed
    zoo info se-resnet50          parameters, multiply-adds, layers
    zoo train resnet20 --data fashion-mnist-sample --epochs 3
    """
    if debug:
        os.environ[DEBUG_ENV] = "1"
    if context.invoked_subcommand is None:  # plain `zoo`: the help, as `zoo --help`
        click.echo(context.get_help())


def registry():
    from ..registry.catalog import default_registry

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
