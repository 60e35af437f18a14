"""``zoo train``: flags to a RunConfig, the launcher for --nproc, progress and loggers."""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from ..base.errors import UserError
from ..base.text import counted
from . import common
from .common import cli


@cli.command("train")
@click.argument("model", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Start from a run config (a run's config.json, or what --print-config printed); flags override "
              "it (--set and the other -set flags key by key).")
@click.option("--print-config", is_flag=True, help="Print the full resolved config, loadable with --config, and stop.")
@click.option("--data", help="Dataset (zoo list --kind data; default cifar10).")
@common.data_dir_option
@click.option("--data-set", multiple=True, metavar="KEY=VALUE", help="A dataset option (image_size=224, "
              "stream=true, workers=4; a wrong key lists the dataset's options).")
@click.option("--aug", "augs", multiple=True, metavar="NAME[=VALUE]",
              help="Augmentation, in order; repeatable (default: crop=4 then hflip; 'none' for none).")
@click.option("--opt", metavar="NAME[=VALUE]", help="Optimizer (default sgd-nesterov).")
@click.option("--opt-set", multiple=True, metavar="KEY=VALUE", help="An optimizer option (betas=[0.9,0.99]).")
@click.option("--lr", type=float, help="Peak learning rate (default: the optimizer's; 0.05 for SGD).")
@click.option("--wd", "weight_decay", type=float, help="Weight decay (default 5e-4; biases and normalisation "
              "weights exempt).")
@click.option("--wd-all", is_flag=True, help="Weight decay on biases and normalisation weights too (the lab's way).")
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
@common.set_option
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

    from ..training.config import with_defaults
    from ..training.loop import LOG_SECONDS, TrainingInterrupted, train
    from ..training.progress import RichReporter

    if nproc is not None:
        from ..training.distributed import launch

        sys.exit(launch(nproc, sys.argv[1:], common.NPROC_ENV))
    from click.core import ParameterSource

    given = {name: value for name, value in flags.items()
             if context.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    if model is not None:
        given["model"] = model
    if logs:
        given["loggers"] = logs
    base = _base_config(model, config_file, resume)
    config = replace(base, **_config_changes(base, given))
    if print_config:
        click.echo(json.dumps(asdict(with_defaults(config, common.registry())), indent=2))
        return
    try:
        steps, seconds = _log_every(log_every)
        summary = train(config, registry=common.registry(), run_dir=run_dir, weights=out, resume=resume,
                        overwrite=overwrite, reporter=RichReporter(interval=seconds),
                        log_every=steps, log_seconds=min(LOG_SECONDS, seconds))
    except TrainingInterrupted as exc:
        if common.is_rank0():
            click.echo(f"zoo: {exc}; {_resume_hint(exc.run_dir, exc.weights)}", err=True)
        sys.exit(130)
    if common.is_rank0():
        _print_summary(summary, as_json)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"test accuracy {summary['test_accuracy']:.2%} after {counted(summary['epochs'], 'epoch')} "
                   f"({summary['seconds']:.0f}s of training); weights: {summary['weights']}")
        if summary.get("checkpoint"):
            click.echo(f"kept beside them: {summary['run_dir']} (config, metrics, and a "
                       f"{summary['checkpoint_bytes'] / 2**20:,.1f} MB checkpoint with the optimizer's state, to "
                       "extend the run with --resume RUN --epochs N; delete it if you will not)", err=True)


def _base_config(model: str | None, config_file, resume):
    """The config the flags change: a config file's, a resumed run's own, or RunConfig's defaults."""
    from ..training.config import RunConfig

    if config_file:
        return RunConfig.from_file(config_file, common.registry())
    if resume:  # the run's own config; only the flags given here change it (and may be refused)
        from ..training.runs import resume_config

        return resume_config(None, Path(resume))[0]
    if model is None:
        raise UserError("give a MODEL to train (or --config FILE, or --resume RUN); see zoo train --help")
    return RunConfig()


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
    from ..training.config import expand_shorthand, merge_options
    from ..base.options import parse_sets

    changes: dict[str, Any] = {}
    fields_of_flags = {"data": "data", "data_dir": "data_dir", "opt": "opt", "lr": "lr", "weight_decay": "weight_decay",
                       "sched": "sched", "warmup": "warmup", "epochs": "epochs", "batch_size": "batch_size",
                       "label_smoothing": "label_smoothing", "seed": "seed", "checkpoint_every": "checkpoint_every",
                       "limit_train": "train_limit", "limit_test": "test_limit", "trainer": "trainer",
                       "model": "model", "pretrained": "pretrained", "init": "init", "freeze_epochs": "freeze_epochs"}
    for flag, field_name in fields_of_flags.items():
        if flag in given:
            changes[field_name] = given[flag]
    for flag, field_name, choice in (("opt_set", "opt_options", "opt"), ("sched_set", "sched_options", "sched"),
                                     ("sets", "model_options", "model"), ("data_set", "data_options", "data")):
        if flag in given:  # over the same choice, a flag changes the options it names and keeps the others
            changes[field_name] = merge_options({} if choice in given else getattr(base, field_name),
                                                parse_sets(given[flag]))
    if "augs" in given:
        changes["augs"] = [] if list(given["augs"]) == ["none"] else list(given["augs"])
    if "loggers" in given:
        changes["loggers"] = list(given["loggers"])
    for flag, field_name, value in (("no_normalize", "normalize", False), ("no_download", "download", False),
                                    ("sync_bn", "sync_bn", True), ("wd_all", "decay_all", True)):
        if flag in given:
            changes[field_name] = value
    if "amp" in given:
        flagged = common.registry().flagged("trainer", "amp").qualified_name
        if "trainer" in given and common.registry().get("trainer", given["trainer"]).qualified_name != flagged:
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
    return expand_shorthand(changes, common.registry())


def _resume_hint(run_dir, weights) -> str:
    """The run folder holds its config, so the folder (and the processes) is all a resume needs, and
    --out where the weights go elsewhere than zoo's own place (which zoo never takes from a file)."""
    from ..training.runs import is_weights_place

    out = [] if is_weights_place(Path(run_dir), Path(weights)) else ["--out", str(weights)]
    if "WORLD_SIZE" in os.environ and common.NPROC_ENV not in os.environ:
        return f"resume with the same torchrun command and {shlex.join(['--resume', str(run_dir), *out])}"
    nproc = ["--nproc", os.environ[common.NPROC_ENV]] if common.NPROC_ENV in os.environ else []
    return f"resume with: {shlex.join(['zoo', 'train', *nproc, '--resume', str(run_dir), *out])}"
