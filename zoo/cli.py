"""The ``zoo`` command. Heavy modules (torch) are imported inside the commands that need them."""
from __future__ import annotations

import json
import os
import shlex
import sys
from collections import Counter
from typing import Any

import click

from . import __version__
from .errors import PluginError, UserError
from .specs import KINDS

DEBUG_ENV = "ZOO_DEBUG"
NPROC_ENV = "ZOO_NPROC"  # set for the workers `zoo train --nproc N` launches
KIND_CHOICES = ["model", *KINDS]


def _registry():
    from .registry import default_registry

    return default_registry()


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


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
    rows = [{"name": s.name, "kind": s.kind, "plugin": s.plugin, "summary": s.summary} for s in specs]
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


def _spec_record(spec) -> dict[str, Any]:
    import dataclasses

    record = {"name": spec.name, "kind": spec.kind, "plugin": spec.plugin, "summary": spec.summary}
    record.update((f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec)
                  if f.name not in record and f.name != "factory")
    return record


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


def data_dir_option(function):
    return click.option("--data-dir", type=click.Path(file_okay=False),
                        help="Where data lives (default $ZOO_DATA_DIR or ~/.cache/zoo/data; for imagefolder, "
                             "the folder itself).")(function)


def build_model(name: str, sets: tuple[str, ...], **standard: Any):
    """The model ``name`` with ``--set`` options and the standard ones that are not None."""
    from .models import create_model
    from .options import parse_sets

    options = parse_sets(sets)
    clash = sorted(set(options) & set(standard))
    if clash:
        raise UserError(f"set {clash[0]} with --{clash[0].replace('_', '-')}, not --set")
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
@click.option("--weights", "list_weights", is_flag=True, help="The pretrained weights for MODEL: tags, sources, "
              "licences, input sizes, normalisation, accuracy.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_command(model: str, num_classes: int | None, in_chans: int, input_size: int | None,
                 sets: tuple[str, ...], list_weights: bool, as_json: bool) -> None:
    """Parameters, multiply-adds, output shape and layers of MODEL for one image; for a weights file
    (MODEL ending in .safetensors), what it holds, read from its metadata without loading tensors."""
    if model.endswith(".safetensors"):
        _describe_weights(model, as_json)
        return
    if list_weights:
        _pretrained_weights(model, as_json)
        return
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


def _pretrained_weights(model: str, as_json: bool) -> None:
    from .pretrained import describe, weights_for

    registry = _registry()
    wrappers, arch = registry.resolve_model(model)
    found = weights_for(model, registry) + (weights_for(arch.name, registry) if wrappers else [])
    if not found:
        raise UserError(f"no pretrained weights for {model!r}; see `zoo list --kind weights`")
    described = [{**describe(spec), "default": spec.default, "plugin": spec.plugin} for spec in found]
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
    _console().print(table)
    _console().print("Mean and std, classes and the rest: --json.")
    if wrappers:
        _console().print(f"Weights of {arch.name} leave the blocks of {', '.join(w.name for w in wrappers)} new.")


def _describe_weights(path: str, as_json: bool) -> None:
    from .weights import describe_weights

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
             f"accuracy       {report['test_accuracy']:.2%} after {report['epochs']} epochs (test loss "
             f"{report['test_loss']:.4f})" if report["test_accuracy"] is not None else "accuracy       not recorded",
             f"parameters     {report['parameters']:,}" if report["parameters"] else "parameters     not recorded",
             "versions       " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
             "plugins        " + ", ".join(f"{k} {v}" for k, v in report["plugins"].items())]
    click.echo("\n".join(lines))


@cli.command("train")
@click.argument("model", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Start from a run config (a run's config.json, or what --print-config printed); flags override it.")
@click.option("--print-config", is_flag=True, help="Print the full resolved config, loadable with --config, and stop.")
@click.option("--data", help="Dataset (zoo list --kind data; default cifar10).")
@data_dir_option
@click.option("--data-set", multiple=True, metavar="KEY=VALUE", help="A dataset option (image_size=224, "
              "stream=true, workers=4; a wrong key lists the dataset's options).")
@click.option("--aug", "augs", multiple=True, metavar="NAME[=VALUE]",
              help="Augmentation, in order; repeatable (default: crop=4 then hflip; 'none' for none).")
@click.option("--opt", metavar="NAME[=VALUE]", help="Optimizer (default sgd-nesterov).")
@click.option("--opt-set", multiple=True, metavar="KEY=VALUE", help="An optimizer option (betas=[0.9,0.99]).")
@click.option("--lr", type=float, help="Peak learning rate (default: the optimizer's; 0.05 for SGD).")
@click.option("--wd", "weight_decay", type=float, help="Weight decay (default 5e-4).")
@click.option("--sched", metavar="NAME[=VALUE]",
              help="Learning-rate schedule, e.g. multistep=[20,30,40] (default cosine).")
@click.option("--sched-set", multiple=True, metavar="KEY=VALUE", help="A schedule option (gamma=0.5).")
@click.option("--warmup", type=float, help="Epochs of linear warmup (default 1).")
@click.option("--epochs", type=int, help="Epochs (default 30).")
@click.option("--batch-size", type=int, help="Global batch size (default 128).")
@click.option("--label-smoothing", type=float, help="Label smoothing (default 0).")
@click.option("--pretrained", is_flag=False, flag_value="default", metavar="[TAG]",
              help="Start from pretrained weights: the model's default ones, or a tag (tv_in1k; zoo info MODEL --weights).")
@click.option("--init", type=click.Path(dir_okay=False), help="Start from a zoo weights file (an earlier run's).")
@click.option("--freeze-epochs", type=int, metavar="N", help="Train the classifier alone for the first N epochs "
              "of a fine-tuning (default 0).")
@click.option("--no-normalize", is_flag=True, help="Feed pixels in [0, 1], not normalised by the data's mean "
              "and std (as the lab did).")
@click.option("--amp", is_flag=True, help="Mixed precision (the amp trainer): bf16 on CPU, fp16/bf16 on CUDA.")
@click.option("--trainer", help="Trainer by name (default fp32, or amp with --amp).")
@click.option("--trainer-set", multiple=True, metavar="KEY=VALUE", help="A trainer option (dtype=fp16).")
@click.option("--channels-last/--no-channels-last", default=None, help="Memory format (default: the trainer's).")
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model.")
@click.option("--device", help="cpu, cuda, cuda:1 (default: cuda if available).")
@click.option("--seed", type=int, help="Random seed (default 0).")
@click.option("--checkpoint-every", type=int, metavar="EPOCHS",
              help="Checkpoint every N epochs (default 1; always at the end and on Ctrl-C); resume is exact either way.")
@set_option
@click.option("--limit-train", type=int, help="Use a seeded, class-balanced subset of N training images.")
@click.option("--limit-test", type=int, help="Use a seeded, class-balanced subset of N test images.")
@click.option("--out", type=click.Path(dir_okay=False), help="Weights file (default weights/<run>.safetensors).")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Run folder (default runs/<run>).")
@click.option("--overwrite", is_flag=True, help="Replace an existing weights file or run folder.")
@click.option("--resume", type=click.Path(), help="Continue the run in this run folder, with its own config.")
@click.option("--no-download", is_flag=True, help="Never download missing data.")
@click.option("--nproc", type=int, help="Train data-parallel in N processes on this machine (through torchrun).")
@click.option("--sync-bn", is_flag=True, help="Batch norm statistics over every process's batch.")
@click.option("--log-every", multiple=True, metavar="N|Ns", help="Progress every N steps (default 25: a host "
              "sync each) and, outside a terminal, a line every N seconds ('30s', the default); repeatable.")
@click.option("--log", "logs", multiple=True, metavar="NAME[=VALUE]",
              help="Also report to this logger (zoo list --kind logger: csv, tensorboard, ...); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def train_command(context: click.Context, model: str | None, config_file, print_config: bool, out, run_dir,
                  overwrite: bool, resume, nproc, log_every: tuple[str, ...], logs: tuple[str, ...], as_json: bool,
                  **flags: Any) -> None:
    """Train MODEL and save its weights.

    \b
    zoo train se-vgg16 --aug hflip                 CIFAR-10, downloaded when missing
    zoo train resnet20 --data fashion-mnist-sample --epochs 3
    zoo train vgg16_bn --opt adam --lr 0.005 --sched multistep=[20,30,40] --epochs 50 --batch-size 256
    zoo train resnet50 --pretrained --data imagefolder --data-dir photos/ --freeze-epochs 1   fine-tuning
    zoo train --config runs/<run>/config.json --seed 1   a run again, with another seed
    zoo train --resume runs/<run>                        continue a run with its own config
    """
    from dataclasses import asdict, replace

    from .config import RunConfig, with_defaults
    from .reporting import RichReporter
    from .training import TrainingInterrupted, train

    if nproc is not None:
        from .distributed import launch

        sys.exit(launch(nproc, sys.argv[1:], NPROC_ENV))
    from click.core import ParameterSource

    given = {name: value for name, value in flags.items()
             if context.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    if model is not None:
        given["model"] = model
    if config_file:
        base = RunConfig.from_file(config_file)
    elif resume:  # the run's own config; only the flags given here change it (and may be refused)
        from pathlib import Path

        from .runs import resume_config

        base = resume_config(None, Path(resume), out)[0]
    elif model is None:
        raise UserError("give a MODEL to train (or --config FILE, or --resume RUN); see zoo train --help")
    else:
        base = RunConfig()
    config = replace(base, **_config_changes(base, given))
    if print_config:
        click.echo(json.dumps(asdict(with_defaults(config, _registry())), indent=2))
        return
    try:
        steps, seconds = _log_every(log_every)
        summary = train(config, registry=_registry(), run_dir=run_dir, weights=out, resume=resume,
                        overwrite=overwrite, reporter=_reporters(logs, RichReporter(interval=seconds)),
                        log_every=steps)
    except TrainingInterrupted as exc:
        if _is_rank0():
            click.echo(f"zoo: {exc}; {_resume_hint(exc.run_dir)}", err=True)
        sys.exit(130)
    if not _is_rank0():
        return
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"test accuracy {summary['test_accuracy']:.2%} after {summary['epochs']} epochs "
                   f"({summary['seconds']:.0f}s of training); weights: {summary['weights']}")


def _reporters(logs: tuple[str, ...], console):
    """The console and every --log logger, built now so that an unknown name or option stops the run
    before it starts; a logger that fails later is dropped with a warning."""
    from .config import call_factory, parse_choice
    from .reporting import Reporters

    chosen = {"console": console}
    for text in logs:
        spec, options = parse_choice(_registry(), "logger", text)
        if spec.qualified_name != "zoo:console":
            chosen[spec.qualified_name] = call_factory(spec, **options)
    return Reporters(chosen)


def _log_every(values: tuple[str, ...]) -> tuple[int, float]:
    """``--log-every``: (steps between progress updates, seconds between plain progress lines)."""
    steps, seconds = 25, 30.0
    for text in values:
        try:
            if text.endswith("s"):
                seconds = float(text[:-1])
            else:
                steps = int(text)
        except ValueError:
            raise UserError(f"--log-every takes steps (50) or seconds (30s), got {text!r}") from None
        if steps < 1 or not 0 <= seconds < float("inf"):
            raise UserError(f"--log-every must be a positive number of steps or seconds, got {text!r}")
    return steps, seconds


def _config_changes(base, given: dict[str, Any]) -> dict[str, Any]:
    """The RunConfig fields that the flags given on the command line set, over ``base``."""
    from .options import parse_sets

    changes: dict[str, Any] = {}
    fields_of_flags = {"data": "data", "data_dir": "data_dir", "opt": "opt", "lr": "lr", "weight_decay": "weight_decay",
                       "sched": "sched", "warmup": "warmup", "epochs": "epochs", "batch_size": "batch_size",
                       "label_smoothing": "label_smoothing", "seed": "seed", "checkpoint_every": "checkpoint_every",
                       "limit_train": "train_limit", "limit_test": "test_limit", "trainer": "trainer",
                       "model": "model", "pretrained": "pretrained", "init": "init", "freeze_epochs": "freeze_epochs"}
    for flag, field_name in fields_of_flags.items():
        if flag in given:
            changes[field_name] = given[flag]
    for flag, field_name in (("opt_set", "opt_options"), ("sched_set", "sched_options"), ("sets", "model_options"),
                             ("data_set", "data_options")):
        if flag in given:
            changes[field_name] = parse_sets(given[flag])
    if "augs" in given:
        changes["augs"] = [] if list(given["augs"]) == ["none"] else list(given["augs"])
    for flag, field_name, value in (("no_normalize", "normalize", False), ("no_download", "download", False),
                                    ("sync_bn", "sync_bn", True)):
        if flag in given:
            changes[field_name] = value
    if "amp" in given:
        flagged = _registry().flagged("trainer", "amp").qualified_name
        if "trainer" in given and _registry().get("trainer", given["trainer"]).qualified_name != flagged:
            raise UserError(f"--amp and --trainer {given['trainer']} contradict each other")
        changes["trainer"] = flagged
    trainer_options = dict(base.trainer_options)
    if "trainer_set" in given:
        trainer_options.update(parse_sets(given["trainer_set"]))
    for flag, key, value in (("channels_last", "channels_last", given.get("channels_last")),
                             ("compile_model", "compile", True), ("device", "device", given.get("device"))):
        if flag in given:
            trainer_options[key] = value
    if trainer_options != base.trainer_options:
        changes["trainer_options"] = trainer_options
    for flag in ("limit_train", "limit_test"):
        if flag in given and given[flag] is not None and given[flag] < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be positive, got {given[flag]}")
    return changes


def _is_rank0() -> bool:
    """Rank 0 prints for all under torchrun: the ranks finish, and stop for Ctrl-C, together."""
    return os.environ.get("RANK", "0") == "0"


def _prints_errors() -> bool:
    """Under `--nproc` every rank meets the same error (same command, same disk, collective checks),
    so rank 0 alone prints it; under a torchrun of your own a node may differ, so every rank does."""
    return _is_rank0() or NPROC_ENV not in os.environ


def _resume_hint(run_dir) -> str:
    """The run folder holds its config, so the folder (and the processes) is all a resume needs."""
    if "WORLD_SIZE" in os.environ and NPROC_ENV not in os.environ:
        return f"resume with the same torchrun command and --resume {shlex.quote(str(run_dir))}"
    nproc = ["--nproc", os.environ[NPROC_ENV]] if NPROC_ENV in os.environ else []
    return f"resume with: {shlex.join(['zoo', 'train', *nproc, '--resume', str(run_dir)])}"


@cli.command("eval")
@click.argument("weights", type=click.Path())
@click.option("--data", help="Dataset (default: the one the weights were trained on).")
@data_dir_option
@click.option("--batch-size", type=int, default=1024, show_default=True)
@click.option("--device", help="cpu, cuda (default: cuda if available).")
@click.option("--trainer", help="Whose precision and memory format to evaluate in (default: the trainer that "
                                "trained the weights, which reproduces the accuracy it reported).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_command(weights: str, data: str | None, data_dir, batch_size: int, device, trainer: str | None,
                 as_json: bool) -> None:
    """Accuracy, loss and per-class accuracy of WEIGHTS on the whole test set (even if training used --limit-test)."""
    from .evaluation import evaluate_weights

    report = evaluate_weights(weights, data, data_dir, batch_size, device, trainer, registry=_registry())
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{report['model']} on {report['data']} ({report['test_images']:,} test images, {report['precision']}): "
               f"accuracy {report['accuracy']:.2%}, loss {report['loss']:.4f}")
    for cls, acc in report["per_class_accuracy"].items():
        click.echo(f"  {cls:<20} {acc:7.2%}")


@cli.command("predict")
@click.argument("weights", type=click.Path())
@click.argument("images", nargs=-1, required=True)
@click.option("--top-k", type=int, default=3, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True, help="Images the model sees at a time.")
@click.option("--device", help="cpu, cuda, cuda:1 (default: cuda if available).")
@click.option("--format", "output", type=click.Choice(["text", "jsonl", "csv"]), default="text", show_default=True,
              help="One line per image; jsonl and csv for other programs (csv: one row per class).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list (of what jsonl prints).")
def predict_command(weights: str, images: tuple[str, ...], top_k: int, batch_size: int, device: str | None,
                    output: str, as_json: bool) -> None:
    """Top-k classes for each image, with their probabilities. IMAGES are files, folders (searched
    recursively) or quoted patterns ('photos/**/*.jpg'); an unreadable image is reported and skipped.

    \b
    zoo predict weights/run.safetensors shoe.png
    zoo predict weights/run.safetensors photos/ --format csv > predictions.csv
    """
    import csv

    from .prediction import iter_predictions

    results = iter_predictions(weights, images, top_k, batch_size, device, registry=_registry())
    listed, skipped, done = [], [], 0
    writer = csv.writer(sys.stdout) if output == "csv" and not as_json else None
    if writer:
        writer.writerow(["image", "rank", "class", "probability"])
    for result in results:
        if "error" in result:
            skipped.append(result["error"])
            click.echo(f"zoo: skipped {result['error']}", err=True)
            continue
        done += 1
        if as_json:
            listed.append(result)
        elif writer:
            writer.writerows([result["image"], rank, t["class"], f"{t['probability']:.6f}"]
                             for rank, t in enumerate(result["top"], 1))
        elif output == "jsonl":
            click.echo(json.dumps(result))
        else:
            click.echo(result["image"] + ": " + ", ".join(f"{t['class']} {t['probability']:.1%}" for t in result["top"]))
    if not done:
        raise UserError(f"no image could be read: {skipped[0]}" if skipped else f"no images in {' '.join(images)}")
    if as_json:
        click.echo(json.dumps(listed, indent=2))
    if skipped:
        click.echo(f"zoo: {done} images predicted, {len(skipped)} unreadable skipped", err=True)


@cli.command("compare")
@click.argument("experiment", required=False, type=click.Path(dir_okay=False))
@click.option("--model", "models", multiple=True, help="A network to compare; repeatable.")
@click.option("--augs", "aug_sets", multiple=True, metavar="A+B", help="An augmentation set, e.g. crop=4+hflip or "
              "none; repeatable.")
@click.option("--opt", "opts", multiple=True, help="An optimizer; repeatable.")
@click.option("--lr", "lrs", multiple=True, type=float, help="A learning rate; repeatable.")
@click.option("--sched", "scheds", multiple=True, help="A schedule; repeatable.")
@click.option("--batch-size", "batch_sizes", multiple=True, type=int, help="A batch size; repeatable.")
@click.option("--data", help="Dataset of every run.")
@data_dir_option
@click.option("--epochs", type=int, help="Epochs of every run.")
@click.option("--amp", is_flag=True, help="Mixed precision for every run.")
@click.option("--quick", is_flag=True, help="The experiment's scale-down: few epochs, a data subset.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default comparisons/<name>).")
@click.option("--dry-run", is_flag=True, help="List the runs and stop.")
def compare_command(experiment, models, aug_sets, opts, lrs, scheds, batch_sizes, data, data_dir, epochs, amp, quick,
                    out, dry_run) -> None:
    """Train a grid of runs one after another and compare them in a table and plots.

    EXPERIMENT is a TOML file (see experiments/); options add axes to its grid or make one. Runs
    already finished are skipped, an interrupted one resumes, so re-running continues a comparison.

    \b
    zoo compare experiments/augmentations.toml --quick
    zoo compare --model vgg16_bn --model resnet18 --augs none --augs crop=4+hflip --epochs 10
    """
    from pathlib import Path

    from .experiments import Experiment, checked_runs, run_experiment
    from .reporting import RichReporter

    spec = Experiment.from_toml(Path(experiment)) if experiment else Experiment("comparison")
    for axis, values in (("model", list(models)), ("augs", [[] if a == "none" else a.split("+") for a in aug_sets]),
                         ("opt", list(opts)), ("lr", list(lrs)), ("sched", list(scheds)),
                         ("batch_size", list(batch_sizes))):
        if values:
            spec.axes[axis] = values
    if not spec.axes and not experiment:
        raise UserError("nothing to compare: give an experiment file (see experiments/) or values to compare, "
                        "e.g. --model vgg16_bn --model resnet18")
    for key, value in (("data", data), ("data_dir", data_dir), ("epochs", epochs),
                       ("trainer", _registry().flagged("trainer", "amp").qualified_name if amp else None)):
        if value is not None:
            spec.base[key] = value
    console = _console(stderr=True)
    if dry_run:
        for slug, _, config in checked_runs(spec, quick, _registry()):
            click.echo(f"{slug}: {config.model} on {config.data}, {config.epochs} epochs, {config.opt} lr {config.lr}, "
                       f"{config.sched}, batch {config.batch_size}, augs {'+'.join(config.augs) or 'none'}")
        return
    folder = Path(out) if out else Path("comparisons") / (spec.name + ("-quick" if quick else ""))
    console.print(f"{len(spec.runs(quick))} runs -> {folder}")
    from .training import TrainingInterrupted

    try:
        rows = run_experiment(spec, folder, quick, registry=_registry(), reporter_factory=lambda slug: RichReporter(),
                              on_skip=lambda slug: console.print(f"{slug}: finished before, skipped"))
    except TrainingInterrupted as exc:
        click.echo(f"zoo: {exc}; run the same zoo compare again to continue", err=True)
        sys.exit(130)
    from .experiments import markdown_table

    click.echo(markdown_table(rows))
    click.echo(f"table, CSV and plots in {folder}")


@cli.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default="report", show_default=True)
@click.option("--title", default="comparison", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a report already in --out.")
def report_command(runs, out, title, overwrite) -> None:
    """Redraw the results table and plots from existing run folders."""
    from pathlib import Path

    from .experiments import REPORT_FILES, markdown_table, write_report

    existing = [name for name in REPORT_FILES if (Path(out) / name).exists()]
    if existing and not overwrite:
        raise UserError(f"{out} already holds a report ({', '.join(existing)}); choose another --out or pass "
                        "--overwrite")

    rows = write_report([Path(r) for r in runs], Path(out), title)
    click.echo(markdown_table(rows))
    click.echo(f"table, CSV and plots in {out}")


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
        click.echo(f"zoo: error: {exc.format_message()}{hint}", err=True)
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except (UserError, PluginError) as exc:  # PluginError: a broken plugin under ZOO_STRICT_PLUGINS=1
        if os.environ.get(DEBUG_ENV):
            raise
        if _prints_errors():
            click.echo(f"zoo: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
