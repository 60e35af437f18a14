"""The ``zoo`` command. Heavy modules (torch) are imported inside the commands that need them; each
command group lives in its own module (catalogue, training, results)."""
from __future__ import annotations

import os
import re
import sys

import click

from ..base.errors import PluginError, UserError, one_line
from . import catalogue, common, results, training  # noqa: F401 - their commands register on `cli`
from .common import cli


def as_flags(message: str) -> str:
    """The library's messages name the Python API's parameters in backticks (```run_dir```); on the
    command line they are the flags of the same names (``--run-dir``)."""
    # where zoo train's flag and zoo.train's parameter (or RunConfig's field) are spelled differently
    flags = {"weights": "--out", "train_limit": "--limit-train", "test_limit": "--limit-test",
             "opt_options": "--opt-set", "sched_options": "--sched-set", "data_options": "--data-set",
             "model_options": "--set"}
    for command in cli.commands.values():
        for param in command.params:
            if isinstance(param, click.Option):
                flags.setdefault(param.name, max(param.opts, key=len))
    return re.sub(r"`(\w+)`", lambda m: flags.get(m[1], m[0]), message)


def main() -> None:
    """Entry point: user errors are one line and exit code 2, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("zoo: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:  # a bad flag or argument: one line too, with where to look
        context = getattr(exc, "ctx", None)
        hint = f" (see {context.command_path} --help)" if context is not None else ""
        click.echo(f"zoo: error: {one_line(exc.format_message())}{hint}", err=True)
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except (UserError, PluginError) as exc:  # PluginError: a broken plugin under ZOO_STRICT_PLUGINS=1
        if os.environ.get(common.DEBUG_ENV):
            raise
        if common.prints_errors():
            click.echo(f"zoo: error: {one_line(as_flags(str(exc)))}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)

