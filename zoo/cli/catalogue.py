"""``zoo list``, ``zoo plugins``, ``zoo info``: what is installed, and what a model or weights file is."""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

import click

from ..base.errors import UserError
from ..base.text import counted
from ..registry.specs import KINDS
from . import common
from .common import cli


KIND_CHOICES = ["model", *KINDS]


@cli.command("list")
@click.argument("pattern", required=False)
@click.option("--kind", type=click.Choice(KIND_CHOICES), help="Only items of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(pattern: str | None, kind: str | None, as_json: bool) -> None:
    """List models, wrappers, augmentations, optimizers, schedules, trainers and datasets.

    PATTERN is a shell-style wildcard such as '*resnet*'. Wrappers compose with architectures by
    name: se-vgg16 is the wrapper se applied to vgg16.
    """
    registry = common.registry()
    if kind == "model":
        from ..models.build import list_models

        names = list_models(pattern, registry=registry)
        if as_json:
            click.echo(json.dumps(names, indent=2))
            return
        if not pattern:  # catalogues (timm/..., se-timm/...) as one line each, as in the table
            catalogues = Counter(n.split("/")[0] for n in names if "/" in n)
            names = [n for n in names if "/" not in n] + [
                f"{prefix}/*  ({count} more: zoo list '{prefix}/*' --kind model)" for prefix, count in
                sorted(catalogues.items())]
        click.echo("\n".join(names))
        return
    specs = registry.select(kind, pattern)
    if as_json:  # every field a tool may read: a dataset's image shape, an architecture's bound options
        click.echo(json.dumps([_spec_record(s) for s in specs], indent=2, default=repr))
        return
    rows = _rows(registry, specs)
    # Namespaced catalogues (timm/...) would drown the table: without a pattern, one line each.
    collapsed: Counter[str] = Counter()
    if not pattern:
        for row in rows:
            if "/" in row["name"]:
                collapsed[(row["name"].split("/")[0], row["kind"], row["plugin"])] += 1
        rows = [r for r in rows if "/" not in r["name"]]
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    for column in ("name", "kind", "plugin", "summary"):
        table.add_column(column, overflow="fold")
    for row in rows:  # as plain text: a plugin's "[brackets]" are its words, not rich markup
        table.add_row(*(Text(row[key]) for key in ("name", "kind", "plugin", "summary")))
    for (namespace, item_kind, plugin), count in sorted(collapsed.items()):
        table.add_row(*map(Text, (f"{namespace}/*", item_kind, plugin, f"{count} more: zoo list '{namespace}/*'")))
    console = common.console()
    if not rows and not collapsed:
        raise UserError(f"nothing matches {pattern!r}" + (f" among kind {kind}" if kind else "") + "; try zoo list")
    console.print(table)
    if not pattern and not kind:
        console.print("\nWrappers compose with architectures by name: se-vgg16, se-resnet50.")


def _spec_record(spec) -> dict[str, Any]:
    import dataclasses

    record = {"name": spec.name, "kind": spec.kind, "plugin": spec.plugin, "summary": spec.summary}
    record.update((f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec)
                  if f.name not in record and f.name != "factory")
    return record


def _rows(registry, specs) -> list[dict[str, str]]:
    """The table's rows: each item by the name a command gives it."""
    shared = Counter((s.kind, s.name) for s in registry.select())  # a name offered once needs no lookup
    return [{"name": _spelling(registry, s) if shared[s.kind, s.name] > 1 else s.name, "kind": s.kind,
             "plugin": s.plugin, "summary": s.summary} for s in specs]


def _spelling(registry, spec) -> str:
    """How a command names ``spec``, whose bare name several plugins offer: the bare name, or
    ``plugin:name`` where the bare name is another's."""
    try:
        return spec.name if registry.find(spec.kind, spec.name) is spec else spec.qualified_name
    except UserError:  # two outside plugins offer it: each is reached by its plugin's name
        return spec.qualified_name


SLOW_PLUGIN_SECONDS = 1.0  # a plugin's import that every command feels


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_command(as_json: bool) -> None:
    """Installed plugins: name, version, status, what each provides and any errors."""
    registry = common.registry()
    infos = sorted(registry.plugins.values(), key=lambda p: p.name)
    if as_json:
        click.echo(json.dumps([vars(p) for p in infos], indent=2))
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    for column in ("plugin", "version", "status", "load (ms)", "provides", "distribution / errors"):
        table.add_column(column, overflow="fold", justify="right" if column == "load (ms)" else "left")
    for p in infos:
        provides = ", ".join(f"{len(names)} {kind}" for kind, names in sorted(p.provides.items()))
        status = Text(p.status, style={"ok": "green", "error": "red"}.get(p.status, ""))
        table.add_row(Text(p.name), Text(p.version), status, f"{p.load_seconds * 1000:,.0f}", provides,
                      Text("; ".join(p.errors) or p.distribution))
    common.console().print(table)
    slow = [p for p in infos if p.load_seconds >= SLOW_PLUGIN_SECONDS]
    if slow:
        common.console(stderr=True).print(Text(
            f"zoo: plugin {', '.join(repr(p.name) for p in slow)} took {max(p.load_seconds for p in slow):.1f} s to "
            f"load, which every zoo command pays; disable it with ZOO_DISABLE_PLUGINS={slow[0].name}"))


def build_model(name: str, sets: tuple[str, ...], **standard: Any):
    """The model ``name`` with ``--set`` options and the standard ones that are not None."""
    from ..io.create import create_model
    from ..base.options import parse_sets

    options = parse_sets(sets)
    clash = sorted(set(options) & set(standard))
    if clash:
        raise UserError(f"set {clash[0]} with --{clash[0].replace('_', '-')}, not --set")
    for key, value in standard.items():
        if value is not None and value <= 0:
            raise UserError(f"{key.replace('_', '-')} must be positive, got {value}")
    return create_model(name, registry=common.registry(), **{**options, **standard})


@cli.command("info")
@click.argument("model")
@click.option("--num-classes", type=int, help="Number of classes (default: the architecture's).")
@click.option("--in-chans", type=int, default=3, show_default=True, help="Input channels.")
@click.option("--input-size", type=int, help="Input side in pixels (default: the architecture's).")
@common.set_option
@click.option("--depth", type=int, default=2, show_default=True, help="Levels of modules in the layer table.")
@click.option("--weights", "list_weights", is_flag=True, help="The pretrained weights for MODEL: tags, sources, "
              "licences, input sizes, normalisation, accuracy.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_command(model: str, num_classes: int | None, in_chans: int, input_size: int | None,
                 sets: tuple[str, ...], depth: int, list_weights: bool, as_json: bool) -> None:
    """Parameters, multiply-adds, output shape and layers of MODEL for one image; for a weights file
    (MODEL ending in .safetensors), what it holds, read from its metadata without loading tensors."""
    if model.endswith(".safetensors"):
        _describe_weights(model, as_json)
        return
    if list_weights:
        _pretrained_weights(model, as_json)
        return
    from ..io.metadata import MAX_INPUT_SIZE

    if input_size is not None and not 1 <= input_size <= MAX_INPUT_SIZE:
        raise UserError(f"--input-size must be in 1..{MAX_INPUT_SIZE} pixels, got {input_size}")
    if not 1 <= in_chans <= 64:
        raise UserError(f"--in-chans must be in 1..64, got {in_chans}")
    registry = common.registry()
    _, arch = registry.resolve_model(model)
    size = input_size or arch.input_size
    net = build_model(model, sets, num_classes=num_classes, in_chans=in_chans, input_size=size)
    from ..models.summary import summarize

    if depth < 1:
        raise UserError(f"--depth must be positive, got {depth}")
    report = {"model": model, **net.zoo_config, **summarize(net, size, in_chans, depth)}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from rich.table import Table

    console = common.console()
    console.print(f"[bold]{model}[/]  ({report['architecture']}"
                  + (f" wrapped by {', '.join(report['wrappers'])}" if report["wrappers"] else "") + ")")
    console.print(f"parameters     {report['parameters']:,}")
    console.print(f"multiply-adds  {report['multiply_adds']:,}  ({report['multiply_adds'] / 1e9:.2f} G for one "
                  f"{in_chans}x{size}x{size} image)")
    console.print(f"output         {report['output']}")
    table = Table(box=None, pad_edge=False)
    for column in ("layer", "type", "output", "params", "mult-adds", "activations"):
        table.add_column(column, justify="left" if column in ("layer", "type", "output") else "right")
    for layer in report["layers"]:
        table.add_row(layer["name"], layer["type"], "x".join(map(str, layer["output"])), f"{layer['params']:,}",
                      f"{layer['multiply_adds'] / 1e6:,.1f} M", f"{layer['activation_bytes'] / 2**10:,.0f} KiB")
    console.print(table)


def _pretrained_weights(model: str, as_json: bool) -> None:
    from ..io.pretrained import describe, weights_for

    registry = common.registry()
    wrappers, arch = registry.resolve_model(model)
    found = weights_for(model, registry) + (weights_for(arch.name, registry) if wrappers else [])
    if not found:
        raise UserError(f"no pretrained weights for {model!r}; see `zoo list --kind weights`")
    described = [{**describe(spec).given(), "default": spec.default, "plugin": spec.plugin} for spec in found]
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("weights", "source", "licence", "input", "top-1"):
        table.add_column(column, overflow="fold")
    for d in described:
        source = (f"hf-hub:{d['hf_hub_id']}" if d.get("hf_hub_id") else
                  d["url"].rpartition("/")[2] if d.get("url") else d.get("file", ""))
        table.add_row(d["name"] + (" (default)" if d["default"] else ""), source, d.get("license") or "?",
                      str(d.get("input_size") or "?"), f"{d['accuracy']:.2f} %" if d.get("accuracy") else "")
    common.console().print(table)
    common.console().print("Mean and std, classes and the rest: --json.")
    if wrappers:
        common.console().print(f"Weights of {arch.name} leave the blocks of {', '.join(w.name for w in wrappers)} new.")


def _describe_weights(path: str, as_json: bool) -> None:
    from ..io.weights import describe_weights

    report = describe_weights(path)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    classes = report["classes"] or []
    lines = [f"{report['model']}  ({report['architecture']}"
             + (f" wrapped by {', '.join(report['wrappers'])}" if report["wrappers"] else "") + ")",
             f"options        {json.dumps(report['options'])}",
             f"data           {report['data']}: {len(classes)} classes ({', '.join(classes[:5])}"
             + (", ..." if len(classes) > 5 else "") + f"), input {'x'.join(map(str, report['input']))}",
             f"trainer        {report['trainer']} ({report['precision']})",
             f"accuracy       {report['test_accuracy']:.2%} after {counted(report['epochs'], 'epoch')} (test loss "
             f"{report['test_loss']:.4f})" if report["test_accuracy"] is not None else "accuracy       not recorded",
             f"parameters     {report['parameters']:,}" if report["parameters"] else "parameters     not recorded",
             "versions       " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
             "plugins        " + ", ".join(f"{k} {v}" for k, v in report["plugins"].items())]
    click.echo("\n".join(lines))
