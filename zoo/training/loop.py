"""The training loop: data on the device, batched augmentation, a trainer plugin for each step."""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..base.version import __version__
from . import distributed
from ..data.augmenter import Augmenter
from ..data.images import data_root
from .checkpoint import Position, last_good, load_checkpoint, save_checkpoint, unwrapped
from .config import Run, RunConfig, check_config_types, with_defaults
from ..registry.factories import call_factory, plugin_code
from .distributed import World
from ..base.errors import UserError
from .evaluation import evaluate, portable_options
from ..io.create import create_model
from ..io.pretrained import body_parameters, trained_size, trained_stats
from .provenance import provenance
from ..registry.catalog import GivenObject, Registry, default_registry
from .progress import Reporter, Reporters, RichReporter, SilentReporter
from .runs import (ZOO_RUN_FILES, check_no_links_out, claim_run_dir, hold_run_dir, naming_missing_plugins, new_run_paths,
                   remove_unstarted_run, resume_config, resumed_weights, save_run_weights)
from ..models.summary import forward_one
from .trainer import BaseTrainer, full_precision, prepare_model
from ..base.files import atomic_write_text, read_bounded




SKIPPED_STEPS_IS_DIVERGENCE = 10  # in a row, for a trainer that skips overflowed steps


class TrainingInterrupted(Exception):
    """Ctrl-C: the current step finished and a checkpoint was written."""

    def __init__(self, run_dir: Path, weights: Path, epoch: int, step: int):
        super().__init__(f"interrupted in epoch {epoch} after step {step}; checkpoint saved in {run_dir}")
        self.run_dir, self.weights = run_dir, weights


class _InterruptFlag:
    """Turns the first Ctrl-C into a flag the loop checks after each step; a second one stops at once."""

    def __enter__(self):
        import threading

        self.event = threading.Event()
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self.event

    def _handle(self, signum, frame):
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _resumed(resume: Path, config: RunConfig | None, changes: dict[str, Any], weights, registry: Registry, module,
             data_object) -> tuple[RunConfig, Path, Path, Run]:
    """The config, run folder, weights file and resolved run of a resumed run; where its names are
    those of a plugin uninstalled since, the error names that plugin."""
    with naming_missing_plugins(resume, registry):
        decided = config is not None
        config, run_dir, recorded = resume_config(config, resume, changes)
        config = config if decided else _changed(config, {}, registry)
        return config, run_dir, resumed_weights(run_dir, recorded, weights), Run.decided(config, registry, module,
                                                                                         data_object)


LOG_SECONDS = 2.0  # the most a progress display waits for news: a 40-second step shows each step


def _reporter(reporter: Reporter | None, progress: bool | None) -> Reporter:
    """The reporter a run reports to: the given one, else a progress display where one is wanted."""
    if progress is None:
        terminal = sys.stderr is not None and sys.stderr.isatty()  # no stderr at all under pythonw
        progress = reporter is None and (terminal or "ipykernel" in sys.modules)
    if not progress:
        return reporter or SilentReporter()
    return Reporters({"progress": RichReporter(), **({"reporter": reporter} if reporter else {})})


def train(config: RunConfig | None = None, *, model: str | torch.nn.Module | None = None, data: Any = None,
          registry: Registry | None = None, run_dir: str | Path | None = None, weights: str | Path | None = None,
          resume: str | Path | None = None, overwrite: bool = False, reporter: Reporter | None = None,
          progress: bool | None = None, log_every: int = 25, log_seconds: float = LOG_SECONDS,
          keep_checkpoint: bool = True, **options: Any) -> dict[str, Any]:
    """Train as ``config`` says (or RunConfig's defaults), with ``options`` (RunConfig's fields) changed;
    return the summary. Writes ``run_dir`` (config, metrics, checkpoint) and the weights file.

    ``model`` and ``data`` are names, or objects: a ``torch.nn.Module`` is trained in place and its
    weights are saved as plain safetensors (zoo cannot rebuild a module it did not build: load them
    into yours); data is an ``ImageData``, an ``ImageFiles`` or a ``(train, test)`` pair of torch
    datasets (decoded into memory). ``resume`` is a run folder to continue (with its own config when
    ``config`` is None; objects are given again). Under torchrun, each process trains on its share of
    every batch and only rank 0 reports and writes.

    ``progress`` shows a bar per epoch (a line every 30 s where the output is no terminal); by default
    on in terminals and notebooks when no ``reporter`` is given. The reporter hears of the steps every
    ``log_every`` steps or ``log_seconds`` seconds, whichever comes first (steps alone when distributed:
    the ranks must agree), and each time costs a host sync. A finished run keeps its checkpoint (the
    optimizer's state: what extending it with more epochs needs) unless ``keep_checkpoint`` is False."""
    world, registry = distributed.launched_world(), registry or default_registry()
    module, data_object, changes = _given(model, data, options)
    if config is None and resume is None:
        if not changes:
            raise UserError("nothing to train: give a config, or a run folder to resume")
        config = RunConfig()
    if config is not None:  # its defaults are decided before a resume compares it with the run's
        config = _changed(config, changes, registry)
    if resume is None:
        run = Run.decided(config, registry, module, data_object)
    else:
        config, run_dir, weights, run = _resumed(Path(resume), config, changes, weights, registry, module, data_object)
    local_batch = distributed.split_batch(config.batch_size, world)
    trainer: BaseTrainer = call_factory(run.trainer_spec, **_device_for(world, config.trainer_options))
    distributed.init(world, trainer.device)
    together = False  # whether every rank ends here at the same point, and can leave the group together
    try:
        named_by_zoo = resume is None and run_dir is None and weights is None
        run_dir, weights = _run_paths(world, config, run_dir, weights, overwrite or resume is not None)
        summary = _train(config, run, trainer, world, local_batch, run_dir, weights, resume is not None,
                         run.reporters(_reporter(reporter, progress)) if world.main else SilentReporter(),
                         (log_every, log_seconds), overwrite=overwrite, named_by_zoo=named_by_zoo,
                         keep_checkpoint=keep_checkpoint)
        together = True
        return summary
    except TrainingInterrupted:  # the ranks agree on the step to stop at
        together = True
        raise
    finally:
        distributed.shutdown(world, together)


def _changed(config: RunConfig, changes: dict[str, Any], registry: Registry) -> RunConfig:
    """``config`` with ``changes`` (RunConfig's fields), checked, and what the user left open decided."""
    try:
        config = replace(config, **changes)
    except TypeError:
        unknown = sorted(set(changes) - {f.name for f in fields(RunConfig)})
        raise UserError(f"unknown option {', '.join(unknown)}; options are RunConfig's fields") from None
    check_config_types(config)
    return with_defaults(config, registry)


def _run_paths(world: World, config: RunConfig, run_dir, weights, overwrite: bool) -> tuple[Path, Path]:
    """The run folder and weights file: rank 0 alone looks at the disk; the others learn its answer,
    or its error."""
    paths: tuple[Path, Path] | UserError | None = None
    if world.main:
        try:
            paths = new_run_paths(config, run_dir, weights, overwrite)
        except UserError as error:
            paths = error
    paths = distributed.broadcast(paths)
    if isinstance(paths, UserError):
        raise paths
    return paths


def _given(model: Any, data: Any, options: dict[str, Any]) -> tuple[torch.nn.Module | None, Any, dict[str, Any]]:
    """The module and dataset given as objects, and the config's changes, which name them ``python:...``."""
    from ..data.images import ImageData
    from ..data.streaming import ImageFiles

    changes, module, dataset = dict(options), None, None
    if isinstance(model, torch.nn.Module):
        module = model
        changes["model"] = str(GivenObject(f"{type(model).__module__}.{type(model).__qualname__}"))
    elif model is not None:
        changes["model"] = model
    if isinstance(data, (ImageData, ImageFiles)):
        dataset = data
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        dataset = ImageData.from_datasets(*data)
    elif data is not None and not isinstance(data, str):
        raise UserError(f"data must be a dataset name, an ImageData, an ImageFiles or a (train, test) pair of "
                        f"datasets, got {type(data).__name__}")
    if dataset is not None:
        changes["data"] = str(GivenObject(dataset.name))
    elif data is not None:
        changes["data"] = data
    return module, dataset, changes


def _device_for(world: World, options: dict[str, Any]) -> dict[str, Any]:
    """Each rank of a CUDA run gets its own GPU: ``cuda`` (or nothing, with a GPU) means the rank's
    local one; an index given by the user is kept."""
    device = options.get("device")
    if world.distributed and torch.cuda.is_available() and device in (None, "cuda"):
        return {**options, "device": f"cuda:{world.local_rank}"}
    return options


def _train(config: RunConfig, run: Run, trainer: BaseTrainer, world: World, local_batch: int, run_dir: Path,
           weights: Path, resuming: bool, reporter: Reporter, log_every: tuple[int, float], overwrite: bool = False,
           named_by_zoo: bool = False, keep_checkpoint: bool = True) -> dict[str, Any]:
    loop = _Loop(config, run, trainer, world, local_batch, reporter, log_every)
    made = not run_dir.exists()
    try:
        loop.open_run(run_dir, weights, resuming, overwrite, named_by_zoo)
        with _InterruptFlag() as interrupted:
            for epoch in range(loop.position.epoch, config.epochs):
                loop.train_epoch(epoch, interrupted)
        return loop.finish(overwrite or resuming, keep_checkpoint)
    except Exception:
        if world.main and not resuming and hasattr(loop, "run_dir"):
            remove_unstarted_run(loop.run_dir, ZOO_RUN_FILES + loop.loggers_write, made or loop.run_dir != run_dir)
        raise
    finally:
        if loop.held >= 0:  # the run folder's lock: the next run in this process may take it
            os.close(loop.held)


def _epochs_recorded(run_dir: Path) -> int:
    """How many epochs a run folder's metrics.jsonl records (0 where it has none, or no such file)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file() or path.is_symlink():
        return 0
    return read_bounded(path, "metrics", 64 << 20, "a run's metrics").count(b"\n")


class _Loop:
    """One run's state, and the loop in parts: an epoch, a step, a log step, the end of an epoch."""

    def __init__(self, config: RunConfig, run: Run, trainer: BaseTrainer, world: World, local_batch: int,
                 reporter: Reporter, log_every: tuple[int, float]):
        self.started = time.perf_counter()  # the summary's wall time: data, evaluation and checkpoints included
        self.config, self.run, self.trainer, self.world, self.reporter = config, run, trainer, world, reporter
        (self.log_every, self.log_seconds), self.local_batch = log_every, local_batch
        self.mine = slice(world.rank * local_batch, (world.rank + 1) * local_batch)  # this rank's part of a batch
        torch.manual_seed(config.seed)  # the same on every rank: one permutation, split between them
        self.data = data = run.load_data().to(trainer.device)
        model = self.built_model()
        self.started_from = getattr(model, "zoo_pretrained", None)
        self.frozen = False  # in the first freeze_epochs the classifier alone trains
        self.body = body_parameters(model, self.started_from["classifier"]) if config.freeze_epochs else []
        if config.sync_bn and world.distributed:
            model = distributed.convert_sync_batchnorm(model, trainer.device)
        with self.running(self.update_code):
            model = prepare_model(trainer, model, (data.channels, data.input_size, data.input_size),
                                  compile=not world.distributed)
            if world.distributed:  # compiled after DDP wraps it, which keeps DDP's overlap of communication
                model = trainer.compiled(distributed.wrap(model, trainer.device))
        self.model, self.optimizer, self.schedule = model, run.optimizer(model), run.schedule()
        if self.body:
            self.optimizer.register_step_pre_hook(self.drop_body_gradients)
        # Without normalisation the model sees pixels in [0, 1], as the lab's ToTensor() alone gave it;
        # weights started from see what they were trained on.
        if not config.normalize:
            self.mean, self.std = [0.0] * data.channels, [1.0] * data.channels
        elif self.started_from and self.started_from.get("mean"):
            self.mean, self.std = trained_stats(self.started_from, data.channels)
        else:
            self.mean, self.std = data.mean, data.std
        self.augmenter = Augmenter(run.augmentations(), any(spec.mixes_labels for spec, _ in run.augs), self.mean,
                                   self.std, data.num_classes)
        self.steps_per_epoch = len(data.train_labels) // config.batch_size
        self.streams, self.waited = getattr(data, "streams", False), 0.0  # seconds waiting for streamed batches
        self.warmup_steps = config.warmup * self.steps_per_epoch
        self.position, self.history, self.test = Position(), [], None
        self.held = -1  # the run folder's lock (hold_run_dir), once the run holds it
        self.provenance = provenance(run, trainer)

    def built_model(self) -> torch.nn.Module:
        """The model the run trains, given or created for the data (from the weights it starts from);
        records its config and whose code its steps run."""
        config, run, data = self.config, self.run, self.data
        if run.model_object is not None:
            model, wrappers, arch = run.model_object, (), None
            self.zoo_config = {"model": config.model}  # a record, not a recipe: zoo cannot rebuild the module
            outputs = forward_one(model, (data.channels, data.input_size, data.input_size)).shape
            if tuple(outputs) != (1, data.num_classes):
                raise UserError(f"{GivenObject.named(config.model).what} gives {tuple(outputs)[1:]} outputs for an image; "
                                f"{data.name} has {data.num_classes} classes")
        else:
            source = config.starting_weights()
            size = trained_size(config.model, source, run.registry) if source else None
            model = create_model(config.model, registry=run.registry, num_classes=data.num_classes,
                                 in_chans=data.channels, input_size=size or data.input_size, pretrained=source,
                                 **config.model_options)
            self.zoo_config = model.zoo_config
            wrappers, arch = run.registry.resolve_model(config.model)
        # Whose code a step runs: what one raises is named by the plugin whose code raised it.
        self.model_code = (arch, (*wrappers, run.trainer_spec, run.opt[0]))
        self.update_code = (run.trainer_spec, (run.opt[0], *wrappers, *((arch,) if arch else ())))
        return model

    def drop_body_gradients(self, *_) -> None:
        if self.frozen:
            for p in self.body:
                p.grad = None

    def open_run(self, run_dir: Path, weights: Path, resuming: bool, overwrite: bool, named_by_zoo: bool) -> None:
        """Restore the checkpoint of a resumed run, or claim an empty run folder; then the run header."""
        self.checkpoint = run_dir / "checkpoint.safetensors"
        self.loggers_write = loggers_write = tuple(name for spec in self.run.registry.items("logger")
                                                   for name in spec.writes)
        if resuming and self.world.main:  # held before anything is read, so that two resumes never both go on
            self.held = hold_run_dir(run_dir)
            check_no_links_out(run_dir, ZOO_RUN_FILES + loggers_write)
        # a checkpoint is written every checkpoint_every epochs: without one, so many epochs mean a finished
        # run whose checkpoint was not kept (zoo compare's), which cannot go on
        if resuming and not self.checkpoint.exists() and _epochs_recorded(run_dir) >= self.config.checkpoint_every:
            raise UserError(f"{run_dir} has trained epochs but no checkpoint (a finished run of zoo compare keeps "
                            f"none), so it cannot go on; start a new run from its weights with init={weights}")
        if resuming and self.checkpoint.exists():
            self.position, self.history = load_checkpoint(self.checkpoint, self.model, self.optimizer, self.trainer,
                                                          self.config, self.steps_per_epoch,
                                                          len(self.data.train_labels))
        elif self.world.main:  # a new run, or one resumed before its first checkpoint: from an empty folder
            run_dir, weights, self.held = claim_run_dir(run_dir, weights, overwrite or resuming, named_by_zoo,
                                                        loggers_write, self.held if resuming else None)
            self.checkpoint = run_dir / "checkpoint.safetensors"
            atomic_write_text(run_dir / "config.json", json.dumps(
                {**asdict(self.config), "weights": str(weights), "zoo_version": __version__,
                 "provenance": self.provenance}, indent=2))
        self.run_dir, self.weights, self.metrics_path = run_dir, weights, run_dir / "metrics.jsonl"
        if self.world.main:
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in self.history))
        self.info = {"run_dir": str(run_dir), "weights": str(weights),
                     "parameters": sum(p.numel() for p in self.model.parameters()),
                     "train_images": len(self.data.train_labels), "test_images": len(self.data.test_labels),
                     "processes": self.world.size, "steps_per_epoch": self.steps_per_epoch,
                     "batch_size": self.config.batch_size, **self.trainer.describe(),
                     **({"started_from": self.started_from} if self.started_from else {}),
                     **({"resumed_at": {"epoch": self.position.epoch, "step": self.position.step}}
                        if self.history or self.position.step else {})}
        self.reporter.start(self.config, self.info)

    def train_epoch(self, epoch: int, interrupted) -> None:
        device, steps = self.trainer.device, self.steps_per_epoch
        self.reporter.epoch_start(epoch, steps)
        self.model.train()
        self.frozen = epoch < self.config.freeze_epochs
        if self.position.order is None:  # a new epoch, not one resumed half-way
            self.position = Position(epoch, 0, torch.randperm(len(self.data.train_labels), device=device),
                                     *(torch.zeros((), device=device) for _ in range(3)))
        started = time.perf_counter() - self.position.seconds
        self.lr = self.config.lr
        if self.streams:  # this rank's part of each remaining batch, decoded by workers as the steps go
            order, size = self.position.order.tolist(), self.config.batch_size
            self.stream = self.data.train_batches(
                [order[i * size:(i + 1) * size][self.mine] for i in range(self.position.step, steps)],
                self.config.seed, epoch, device)
        logged = time.monotonic()
        for i in range(self.position.step, steps):
            self.step(epoch, i)
            logging_step = (i + 1) % self.log_every == 0 or i + 1 == steps or (
                not self.world.distributed and time.monotonic() - logged >= self.log_seconds)
            if logging_step:  # the only host syncs of the epoch
                self.log_step(epoch, i, started)
                logged = time.monotonic()
            # Ranks must agree to stop on the same step, so a distributed run asks at log steps only.
            if (logging_step or not self.world.distributed) and i + 1 < steps and \
                    distributed.any_rank(interrupted.is_set(), device):
                self.position.seconds = time.perf_counter() - started
                if self.world.main:
                    save_checkpoint(self.checkpoint, self.model, self.optimizer, self.trainer, self.position,
                                    self.config, self.history)
                raise TrainingInterrupted(self.run_dir, self.weights, epoch + 1, i + 1)
        self.end_epoch(epoch, started, interrupted)

    def step(self, epoch: int, i: int) -> None:
        config, position, trainer = self.config, self.position, self.trainer
        step = epoch * self.steps_per_epoch + i
        ramp = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        self.lr = config.lr * self.schedule(step / self.steps_per_epoch) * ramp
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        if self.streams:
            waiting = time.perf_counter()
            x, y = self.augmenter(*next(self.stream))
            self.waited += time.perf_counter() - waiting
        elif self.augmenter.augs:  # drawn for the whole batch, as one process would, then this rank's part
            batch = position.order[i * config.batch_size:(i + 1) * config.batch_size]
            x, y = self.augmenter(self.data.train_images[batch], self.data.train_labels[batch])
            x, y = x[self.mine], y[self.mine]
        else:
            batch = position.order[i * config.batch_size:(i + 1) * config.batch_size][self.mine]
            x, y = self.augmenter(self.data.train_images[batch], self.data.train_labels[batch])
        with self.running(self.model_code), trainer.autocast():
            logits = full_precision(self.model(trainer.prepare_input(x)))
            loss = F.cross_entropy(logits, y.to(logits.dtype) if y.is_floating_point() else y,
                                   label_smoothing=config.label_smoothing)
        with self.running(self.update_code):
            self.optimizer.zero_grad(set_to_none=True)
            trainer.backward_step(loss, self.optimizer)
        finite = torch.isfinite(loss.detach())  # an fp16 overflow the trainer skips is not divergence
        position.loss_sum += torch.where(finite, loss.detach(), 0.0)
        position.skipped += ~finite
        position.correct += (logits.detach().argmax(1) == (y.argmax(1) if y.dim() == 2 else y)).sum()
        position.step = i + 1

    def log_step(self, epoch: int, i: int, started: float) -> None:
        """The mean loss so far, the same on every rank, so that a divergence stops them all."""
        position, size = self.position, self.world.size
        sums = torch.stack([position.loss_sum, position.skipped.float()])
        distributed.all_sum(sums)
        loss_sum, skipped = sums.tolist()
        counted = (i + 1) * size - skipped
        window = (i + 1 - position.logged_step) * size
        # A trainer that skips overflowed steps (fp16 loss scaling) has diverged only when it skipped
        # every step for a while: the scaler recovers from an overflow in a step or two.
        position.skipped_in_a_row = (position.skipped_in_a_row + window
                                     if skipped - position.skipped_before >= window else 0)
        if (position.skipped_in_a_row >= SKIPPED_STEPS_IS_DIVERGENCE * size
                if self.trainer.skips_overflow else skipped > 0):
            raise UserError(f"the loss became infinite or NaN in epoch {epoch + 1}, step {i + 1}; "
                            f"{last_good(self.checkpoint)}; try a lower `lr`, more `warmup` or "
                            f"gradient-friendlier `trainer` settings")
        position.skipped_before, position.logged_step = skipped, i + 1
        self.reporter.step(i + 1, loss_sum / counted if counted else math.inf,
                           position.correct.item() / ((i + 1) * self.local_batch),
                           (i + 1) * self.config.batch_size / (time.perf_counter() - started))

    def end_epoch(self, epoch: int, started: float, interrupted) -> None:
        """Evaluate, record the epoch, checkpoint when due (always on the last epoch and on Ctrl-C)."""
        config, position, steps = self.config, self.position, self.steps_per_epoch
        seconds = time.perf_counter() - started
        self.test = self.evaluate()
        if not math.isfinite(self.test["loss"]):  # weights finite but huge (lr 1e30): diverged all the same
            raise UserError(f"the test loss became infinite or NaN after epoch {epoch + 1}: the run diverged; "
                            f"{last_good(self.checkpoint)}; try a lower `lr`, more `warmup` or less `weight_decay`")
        eval_seconds = time.perf_counter() - started - seconds
        sums = torch.stack([position.loss_sum.float(), position.correct.float(), position.skipped.float()])
        distributed.all_sum(sums)
        loss_sum, correct, skipped = sums.tolist()
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(1.0, steps * self.world.size - skipped),
                  "train_accuracy": correct / (steps * config.batch_size), "test_loss": self.test["loss"],
                  "test_accuracy": self.test["accuracy"], "lr": self.lr, "seconds": seconds,
                  "images_per_s": steps * config.batch_size / seconds, "eval_seconds": eval_seconds,
                  **({"skipped_steps": int(skipped)} if skipped else {})}
        self.history.append(record)
        self.position = Position(epoch + 1)
        stopping = epoch + 1 < config.epochs and distributed.any_rank(interrupted.is_set(), self.trainer.device)
        if self.world.main:
            if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs or stopping:
                save_checkpoint(self.checkpoint, self.model, self.optimizer, self.trainer, self.position, config,
                                self.history)
            try:
                with open(self.metrics_path, "a") as f:  # after the checkpoint, which holds the history too
                    f.write(json.dumps(record) + "\n")
            except OSError as exc:
                raise UserError(f"cannot write {self.metrics_path}: {exc.strerror or exc}; "
                                f"{last_good(self.checkpoint)}") from exc
        self.reporter.epoch_end(record)
        if stopping:
            raise TrainingInterrupted(self.run_dir, self.weights, epoch + 1, steps)

    @staticmethod
    def running(code: tuple) -> Any:
        spec, among = code
        return plugin_code(spec, "raised while training", building=False, among=among)

    def evaluate(self) -> dict[str, Any]:
        with self.running(self.model_code):
            return evaluate(self.model, self.trainer, self.augmenter.normalize, self.data,
                            self.config.eval_batch_size, self.world)

    def finish(self, replace_weights: bool, keep_checkpoint: bool) -> dict[str, Any]:
        """The weights file and the summary; the checkpoint kept, or removed once the weights are written."""
        config, data, final = self.config, self.data, self.history[-1]
        test = self.test or self.evaluate()  # evaluated again when a finished run was resumed
        if self.world.main:
            save_run_weights(
                unwrapped(self.model, self.zoo_config), self.weights, self.run_dir, replace_weights,
                classes=list(data.classes), mean=list(self.mean), std=list(self.std), dataset=data.name,
                **({"data_dir": str(data_root(config.data_dir).absolute())} if self.run.data_object is None else {}),
                data_options=config.data_options, **({"crop_pct": data.crop_pct} if self.streams else {}),
                in_chans=data.channels, input_size=data.input_size, padded_from=data.padded_from,
                num_classes=data.num_classes, metrics=final, per_class_accuracy=test["per_class_accuracy"],
                parameters=self.info["parameters"], processes=self.world.size, run=str(self.run_dir),
                **({"pretrained": self.started_from["weights"]} if self.started_from else {}),
                provenance=self.provenance,
                trainer={"name": self.run.trainer_spec.name, "options": portable_options(config.trainer_options),
                         **self.trainer.describe()})
            if not keep_checkpoint:
                self.checkpoint.unlink(missing_ok=True)
        kept = self.checkpoint.exists()
        summary = {"model": config.model, "data": data.name, "epochs": config.epochs,
                   "test_accuracy": final["test_accuracy"], "test_loss": final["test_loss"],
                   "seconds": sum(r["seconds"] for r in self.history),
                   "wall_seconds": time.perf_counter() - self.started, "weights": str(self.weights),
                   "run_dir": str(self.run_dir), "parameters": self.info["parameters"], "processes": self.world.size,
                   "checkpoint": str(self.checkpoint) if kept else None,
                   "checkpoint_bytes": self.checkpoint.stat().st_size if kept else 0,
                   **({"data_wait_share": self.waited / max(1e-9, sum(r["seconds"] for r in self.history))}
                      if self.streams else {})}
        self.reporter.finish(summary)
        return summary
