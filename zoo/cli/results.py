"""``zoo eval``, ``zoo predict``, ``zoo compare``, ``zoo report``: what trained weights do."""
from __future__ import annotations

import json
import sys

import click

from ..base.errors import UserError, one_line
from . import common
from .common import cli


@cli.command("eval")
@click.argument("weights", type=click.Path())
@click.option("--data", help="Dataset (default: the one the weights were trained on).")
@common.data_dir_option
@click.option("--batch-size", type=int, default=1024, show_default=True)
@click.option("--device", help="cpu, cuda (default: cuda if available).")
@click.option("--trainer", help="Whose precision and memory format to evaluate in (default: the trainer that "
                                "trained the weights, which reproduces the accuracy it reported).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_command(weights: str, data: str | None, data_dir, batch_size: int, device, trainer: str | None,
                 as_json: bool) -> None:
    """Accuracy, loss and per-class accuracy of WEIGHTS on the whole test set (even if training used --limit-test)."""
    from ..apps.eval import evaluate_weights

    report = evaluate_weights(weights, data, data_dir, batch_size, device, trainer, registry=common.registry())
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

    from ..apps.predict import iter_predictions

    results = iter_predictions(weights, images, top_k, batch_size, device, registry=common.registry())
    listed, skipped, done = [], [], 0
    writer = csv.writer(sys.stdout) if output == "csv" and not as_json else None
    if writer:
        writer.writerow(["image", "rank", "class", "probability"])
    for result in results:
        if "error" in result:
            skipped.append(one_line(result["error"]))
            if done:  # before the first image that could be read, held back: if none can, one error line says so
                click.echo(f"zoo: skipped {skipped[-1]}", err=True)
            continue
        if not done:
            for error in skipped:
                click.echo(f"zoo: skipped {error}", err=True)
        done += 1
        if as_json:
            listed.append(result)
        elif writer:
            writer.writerows([result["image"], rank, t["class"], f"{t['probability']:.6f}"]
                             for rank, t in enumerate(result["top"], 1))
        elif output == "jsonl":
            click.echo(json.dumps(result))
        else:
            click.echo(one_line(result["image"]) + ": " + ", ".join(f"{one_line(t['class'])} {t['probability']:.1%}"
                                                                    for t in result["top"]))
    if not done:
        raise UserError(f"no image could be read{f' ({len(skipped)} tried)' if len(skipped) > 1 else ''}: "
                        f"{skipped[0]}" if skipped else f"no images in {' '.join(images)}")
    if as_json:
        click.echo(json.dumps(listed, indent=2))
    if skipped:
        click.echo(f"zoo: {done} images predicted, {len(skipped)} unreadable skipped", err=True)


@cli.command("export")
@click.argument("weights", type=click.Path())
@click.option("--format", "format_", default="pt2", show_default=True, metavar="NAME",
              help="An exporter (zoo list --kind exporter): pt2 (torch.export), onnx.")
@click.option("--out", type=click.Path(dir_okay=False), help="Output file (default: beside WEIGHTS, the format's suffix).")
@click.option("--batch-size", type=int, help="A fixed batch of N images (default: any batch size).")
@click.option("--dynamic-batch", is_flag=True, hidden=True, help="Any batch size: the default now.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def export_command(weights: str, format_: str, out, batch_size, dynamic_batch: bool, overwrite: bool,
                   as_json: bool) -> None:
    """Write WEIGHTS in a deployment format that takes any batch size, with the classes, input size and
    normalisation inside the file; verified before it is kept: the exported model must answer a probe
    batch as PyTorch does.

    \b
    zoo export weights/run.safetensors --format onnx
    zoo export weights/run.safetensors --batch-size 1     exactly one image at a time
    """
    from ..io.export import export_weights

    if batch_size is not None and dynamic_batch:
        raise UserError("--batch-size fixes the batch; --dynamic-batch (the default) takes any: give one")
    result = export_weights(weights, format_, out, batch_size is None, overwrite, registry=common.registry(),
                            batch_size=batch_size or 1)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    batch = "any batch size" if result["batch_size"] is None else f"batches of exactly {result['batch_size']}"
    click.echo(f"wrote {result['path']} ({result['format']}, {batch}); its "
               f"outputs are within {result['relative_difference']:.1e} of the PyTorch model's on a probe batch")


def report_options(command):
    """What a comparison's report can add: a baseline row, and wall time on the plots' x axis."""
    command = click.option("--baseline", metavar="RUN|NAME=ACC",
                           help="Compare every row with this run (a run name or folder) or number, e.g. "
                                "'lab VGG16=87.5%'; without it, runs of several seeds are compared with the best.")(command)
    return click.option("--x-axis", type=click.Choice(["epoch", "time"]), default="epoch", show_default=True,
                        help="Plot against epochs or wall time.")(command)


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
@common.data_dir_option
@click.option("--epochs", type=int, help="Epochs of every run.")
@click.option("--limit-train", type=int, help="Every run on a seeded, class-balanced subset of N training images.")
@click.option("--limit-test", type=int, help="Every run tested on a seeded, class-balanced subset of N test images.")
@click.option("--amp", is_flag=True, help="Mixed precision for every run.")
@click.option("--quick", is_flag=True, help="The experiment's scale-down: few epochs, a data subset.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default comparisons/<name>).")
@click.option("--seeds", type=int, help="Run every grid point with N seeds (seed, seed+1, ...); the table shows "
              "mean ± std, the plots a band.")
@click.option("--dry-run", is_flag=True, help="List the runs and stop.")
@report_options
def compare_command(experiment, models, aug_sets, opts, lrs, scheds, batch_sizes, data, data_dir, epochs, limit_train,
                    limit_test, amp, quick, out, seeds, dry_run, baseline, x_axis) -> None:
    """Train a grid of runs one after another and compare them in a table and plots.

    EXPERIMENT is a TOML file (see experiments/); options add axes to its grid or make one, and the
    settings of every run (--data, --epochs, --limit-train, ...) win over the file's, --quick's too.
    Runs already finished are skipped, an interrupted one resumes, so re-running continues a comparison.

    \b
    zoo compare experiments/augmentations.toml --quick
    zoo compare --model vgg16_bn --model resnet18 --augs none --augs crop=4+hflip --epochs 10
    zoo compare --model resnet20 --augs none --augs hflip --seeds 3   mean ± std over three seeds
    """
    from pathlib import Path

    from ..apps.compare import run_experiment
    from ..apps.report import markdown_table
    from ..training.loop import TrainingInterrupted
    from ..training.progress import RichReporter

    settings = {"data": data, "data_dir": data_dir, "epochs": epochs, "train_limit": limit_train,
                "test_limit": limit_test,
                "trainer": common.registry().flagged("trainer", "amp").qualified_name if amp else None}
    spec = _experiment(experiment, models, aug_sets, opts, lrs, scheds, batch_sizes, settings, seeds)
    if dry_run:
        _list_runs(spec, quick)
        return
    console = common.console(stderr=True)
    folder = Path(out) if out else Path("comparisons") / (spec.name + ("-quick" if quick else ""))
    console.print(f"{len(spec.runs(quick, common.registry()))} runs -> {folder}")
    try:
        rows, named = run_experiment(spec, folder, quick, registry=common.registry(), baseline=baseline, x_axis=x_axis,
                                     reporter_factory=lambda slug: RichReporter(),
                                     on_skip=lambda slug: console.print(f"{slug}: finished before, skipped"))
    except TrainingInterrupted as exc:
        click.echo(f"zoo: {exc}; run the same zoo compare again to continue", err=True)
        sys.exit(130)
    click.echo(markdown_table(rows, named))
    click.echo(f"table, CSV and plots in {folder}; each finished run keeps its config, metrics and weights (no "
               "checkpoint: extend one with zoo train --init WEIGHTS)")


def _experiment(experiment, models, aug_sets, opts, lrs, scheds, batch_sizes, settings, seeds):
    """The experiment file's grid (or an empty one), with the axes and the settings the flags give."""
    from pathlib import Path

    from ..apps.compare import Experiment

    spec = Experiment.from_toml(Path(experiment)) if experiment else Experiment("comparison")
    for axis, values in (("model", list(models)), ("augs", [[] if a == "none" else a.split("+") for a in aug_sets]),
                         ("opt", list(opts)), ("lr", list(lrs)), ("sched", list(scheds)),
                         ("batch_size", list(batch_sizes))):
        if values:
            spec.axes[axis] = values
    if not spec.axes and not experiment:
        raise UserError("nothing to compare: give an experiment file (see experiments/) or values to compare, "
                        "e.g. --model vgg16_bn --model resnet18")
    spec.settings = {key: value for key, value in settings.items() if value is not None}
    if seeds is not None:
        if not 1 <= seeds <= 100:
            raise UserError(f"--seeds must be in 1..100, got {seeds}")
        spec.seeds = seeds
    return spec


def _list_runs(spec, quick: bool) -> None:
    """--dry-run: each run's name and what it trains, every name and option checked, and its data."""
    from dataclasses import asdict

    from ..apps.compare import checked_runs, data_checked
    from ..apps.report import describe_run

    runs = checked_runs(spec, quick, common.registry())
    for slug, _, config in runs:
        click.echo(f"{slug}: {describe_run(asdict(config))}")
    for note in data_checked(runs, common.registry()):
        click.echo(f"zoo: {note}", err=True)


@cli.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default="report", show_default=True)
@click.option("--title", default="comparison", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a report already in --out.")
@report_options
def report_command(runs, out, title, overwrite, baseline, x_axis) -> None:
    """Redraw the results table and plots from existing run folders."""
    import os
    from pathlib import Path

    from ..apps.report import REPORT_FILES, markdown_table, write_report

    existing = [name for name in REPORT_FILES if os.path.lexists(Path(out) / name)]  # a dangling link too
    if existing and not overwrite:
        raise UserError(f"{out} already holds a report ({', '.join(existing)}); choose another --out or pass "
                        "--overwrite")

    rows, named = write_report([Path(r) for r in runs], Path(out), title, baseline, x_axis)
    click.echo(markdown_table(rows, named))
    click.echo(f"table, CSV and plots in {out}")
