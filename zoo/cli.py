"""The ``zoo`` command. Heavy modules (torch) are imported inside the commands that need them."""
from __future__ import annotations

import json
import os
import sys
from collections import Counter
from typing import Any

import click

from . import __version__
from .errors import UserError

DEBUG_ENV = "ZOO_DEBUG"
KIND_CHOICES = ["model", "arch", "wrapper", "aug", "opt", "sched", "trainer", "data"]


def _registry():
    from .registry import default_registry

    return default_registry()


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="zoo")
@click.option("--debug", is_flag=True, help=f"Show tracebacks of errors (or set {DEBUG_ENV}=1).")
def cli(debug: bool) -> None:
    """A model zoo and trainer for VGG, ResNet and Squeeze-and-Excitation networks.

    \b
    zoo list '*resnet*'           what is installed
    zoo info se-resnet50          parameters, multiply-adds, layers
    zoo train resnet20 --data fashion-mnist-sample --epochs 3
    """
    if debug:
        os.environ[DEBUG_ENV] = "1"


@cli.command("list")
@click.argument("pattern", required=False)
@click.option("--kind", type=click.Choice(KIND_CHOICES), help="Only items of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(pattern: str | None, kind: str | None, as_json: bool) -> None:
    """List models, wrappers, augmentations, optimizers, schedules, trainers and datasets.

    PATTERN is a shell-style wildcard such as '*resnet*'. Wrappers compose with architectures by
    name: se-vgg16 is the wrapper se applied to vgg16.
    """
    registry = _registry()
    if kind == "model":
        from .models import list_models

        names = list_models(pattern, registry=registry)
        if as_json:
            click.echo(json.dumps(names, indent=2))
        else:
            click.echo("\n".join(names))
        return
    rows = [{"name": s.name, "kind": s.kind, "plugin": s.plugin, "summary": s.summary}
            for s in registry.list(kind, pattern)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    # Namespaced catalogues (timm/...) would drown the table: without a pattern, one line each.
    collapsed: Counter[str] = Counter()
    if not pattern:
        for row in rows:
            if "/" in row["name"]:
                collapsed[(row["name"].split("/")[0], row["kind"], row["plugin"])] += 1
        rows = [r for r in rows if "/" not in r["name"]]
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "kind", "plugin", "summary"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["kind"], row["plugin"], row["summary"])
    for (namespace, item_kind, plugin), count in sorted(collapsed.items()):
        table.add_row(f"{namespace}/*", item_kind, plugin, f"{count} more: zoo list '{namespace}/*'")
    console = _console()
    if not rows and not collapsed:
        raise UserError(f"nothing matches {pattern!r}" + (f" among kind {kind}" if kind else "") + "; try zoo list")
    console.print(table)
    if not pattern and not kind:
        console.print("\nWrappers compose with architectures by name: se-vgg16, se-resnet50.")


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_command(as_json: bool) -> None:
    """Installed plugins: name, version, status, what each provides and any errors."""
    registry = _registry()
    infos = sorted(registry.plugins.values(), key=lambda p: p.name)
    if as_json:
        click.echo(json.dumps([vars(p) for p in infos], indent=2))
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("plugin", "version", "status", "provides", "distribution / errors"):
        table.add_column(column, overflow="fold")
    for p in infos:
        provides = ", ".join(f"{len(names)} {kind}" for kind, names in sorted(p.provides.items()))
        status = {"ok": "[green]ok[/]", "error": "[red]error[/]"}.get(p.status, p.status)
        table.add_row(p.name, p.version, status, provides, "; ".join(p.errors) or p.distribution)
    _console().print(table)


def set_option(function):
    return click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                        help="An architecture option (width=0.5, layers=[2,2,2,2]) or, as wrapper.key, "
                             "a wrapper option (se.reduction=8). Repeatable.")(function)


def build_model(name: str, sets: tuple[str, ...], **standard: Any):
    """The model ``name`` with ``--set`` options and the standard ones that are not None."""
    from .models import create_model
    from .options import parse_sets

    options = parse_sets(sets)
    for key, value in standard.items():
        if value is not None and value <= 0:
            raise UserError(f"{key.replace('_', '-')} must be positive, got {value}")
    return create_model(name, registry=_registry(), **{**options, **standard})


@cli.command("info")
@click.argument("model")
@click.option("--num-classes", type=int, help="Number of classes (default: the architecture's).")
@click.option("--in-chans", type=int, default=3, show_default=True, help="Input channels.")
@click.option("--input-size", type=int, help="Input side in pixels (default: the architecture's).")
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_command(model: str, num_classes: int | None, in_chans: int, input_size: int | None,
                 sets: tuple[str, ...], as_json: bool) -> None:
    """Parameters, multiply-adds, output shape and layers of MODEL for one image."""
    registry = _registry()
    _, arch = registry.resolve_model(model)
    size = input_size or arch.input_size
    net = build_model(model, sets, num_classes=num_classes, in_chans=in_chans, input_size=size)
    from .summary import summarize

    report = {"model": model, **net.zoo_config, **summarize(net, size, in_chans)}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from rich.table import Table

    console = _console()
    console.print(f"[bold]{model}[/]  ({report['architecture']}"
                  + (f" wrapped by {', '.join(report['wrappers'])}" if report["wrappers"] else "") + ")")
    console.print(f"parameters     {report['parameters']:,}")
    console.print(f"multiply-adds  {report['multiply_adds']:,}  ({report['multiply_adds'] / 1e9:.2f} G for one "
                  f"{in_chans}x{size}x{size} image)")
    console.print(f"output         {report['output']}")
    table = Table(box=None, pad_edge=False)
    for column in ("layer", "type", "output", "params"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for layer in report["layers"]:
        table.add_row(layer["name"], layer["type"], "x".join(map(str, layer["output"])), f"{layer['params']:,}")
    console.print(table)


def main() -> None:
    """Entry point: user errors are one line and exit code 2, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("zoo: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except UserError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        click.echo(f"zoo: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
