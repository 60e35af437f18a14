"""The training loop: data on the device, batched augmentation, a trainer plugin for each step."""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F

from . import __version__
from . import distributed
from .data import ImageData, data_root
from .distributed import World
from .errors import PluginError, UserError
from .models import STANDARD_OPTIONS, check_file_options, check_model, check_options, create_model
from .options import parse_value
from .registry import Registry, default_registry
from .specs import Spec
from .summary import forward_one
from .weights import (atomic_save, atomic_write_text, clean_state_dict, parse_json, read_header, read_safetensors,
                      regular_file, save_weights)


def usable_device(name: str | None) -> torch.device:
    """The device ``name`` (default: cuda if available, else cpu), or one clear error if this machine
    cannot use it."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps", "xpu"):  # meta, say: tensors without data cannot train
        raise UserError(f"device {name!r} cannot train or evaluate; use cpu, cuda or cuda:N")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:  # no driver, no such index, a CPU-only build
        raise UserError(f"device {name!r} is not usable here ({str(exc).strip().splitlines()[0]}); "
                        "use --device cpu") from exc
    return device


class BaseTrainer:
    """Runs training steps on one device in fp32: the plain trainer, and the base of others.

    A trainer plugin subclasses this and overrides :meth:`autocast` and :meth:`backward_step`
    (mixed precision), or :meth:`prepare` (memory format, compilation).
    """

    precision = "fp32"
    skips_overflow = False  # whether a step with a non-finite loss is skipped (fp16 loss scaling) not applied

    def __init__(self, device: str | None = None, channels_last: bool | None = None, compile: bool = False):
        self.device = usable_device(device)
        self.channels_last = self.default_channels_last() if channels_last is None else bool(channels_last)
        self.compile = bool(compile)
        # Measured on CPUs (docs/benchmarks.md): oneDNN's channels_last convolutions lose to contiguous
        # ones on feature maps under 8x8. Unless the format was asked for, those layers stay contiguous.
        chosen = channels_last is None and self.channels_last and self.device.type == "cpu" and not self.compile
        self.contiguous_below = 8 if chosen else 0
        if self.device.type == "cuda":
            # Shapes are fixed through a run, so cuDNN's autotuner pays off; TF32 matmuls are what
            # fp32 training on tensor cores is expected to use (torchvision's and timm's references do).
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True

    def default_channels_last(self) -> bool:
        """Measured (docs/benchmarks.md): on CPUs channels_last speeds fp32 ResNets up by a third (but
        not small feature maps: see ``contiguous_below``); on CUDA it pays off with reduced precision only."""
        return self.device.type == "cpu"

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on the device, in the trainer's memory format (compilation comes after)."""
        return model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)

    def compiled(self, model: torch.nn.Module) -> torch.nn.Module:
        return torch.compile(model) if self.compile else model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        loss.backward()
        optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state to checkpoint (a gradient scaler's, say)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "precision": self.precision, "channels_last": self.channels_last,
                "contiguous_below": self.contiguous_below, "compile": self.compile}


def prepare_model(trainer: BaseTrainer, model: torch.nn.Module, input_shape: tuple[int, ...],
                  compile: bool = True) -> torch.nn.Module:
    """Check that an image of ``input_shape`` runs through ``model`` (one clear error if not), then the
    trainer's :meth:`~BaseTrainer.prepare`, small feature maps contiguous where it chose so, and the
    trainer's compilation unless ``compile`` is False (a distributed run compiles after DDP wraps it)."""
    small = _convs_on_small_maps(model, input_shape, getattr(trainer, "contiguous_below", 0))
    model = trainer.prepare(model)
    for conv in small:
        conv.weight.data = conv.weight.data.contiguous()
        conv.register_forward_pre_hook(_contiguous_input)
    return trainer.compiled(model) if compile else model


def _convs_on_small_maps(model: torch.nn.Module, input_shape: tuple[int, ...], below: int) -> list[torch.nn.Module]:
    """The convolutions whose input is under ``below`` pixels on a side, found with one image."""
    small: list[torch.nn.Module] = []

    def find(conv, args):
        if min(args[0].shape[-2:]) < below:
            small.append(conv)

    hooks = [m.register_forward_pre_hook(find) for m in model.modules() if isinstance(m, torch.nn.Conv2d)] if below else []
    try:
        forward_one(model, input_shape)
    finally:
        for hook in hooks:
            hook.remove()
    return small


def _contiguous_input(conv: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].contiguous(), *args[1:])


@dataclass
class RunConfig:
    """Everything that defines a training run; saved as the run's ``config.json``."""

    model: str = "resnet18"
    # Defaults name their provider: a plugin that also offers an `hflip` breaks only the bare name.
    data: str = "datasets:cifar10"
    augs: list[str] = field(default_factory=lambda: ["augment:crop=4", "augment:hflip"])
    opt: str = "optim:sgd-nesterov"
    opt_options: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None  # None: the optimizer's recommended rate, else DEFAULT_LR
    weight_decay: float = 5e-4
    sched: str = "optim:cosine"
    sched_options: dict[str, Any] = field(default_factory=dict)
    warmup: float = 1.0
    epochs: int = 30
    batch_size: int = 128
    eval_batch_size: int = 512
    label_smoothing: float = 0.0
    normalize: bool = True  # inputs normalised by the data's mean and std; False: pixels in [0, 1]
    checkpoint_every: int = 1  # epochs; a run always checkpoints its last epoch and when it is interrupted
    sync_bn: bool = False
    trainer: str = "trainers:fp32"
    trainer_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    train_limit: int | None = None
    test_limit: int | None = None
    data_dir: str | None = None
    download: bool = True

    # Fields that may differ when a run is resumed: where things are, not what is computed.
    RESUMABLE_CHANGES = ("data_dir", "download", "epochs", "eval_batch_size", "checkpoint_every")


_FIELD_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def check_config_types(config: RunConfig) -> None:
    """Values from files and the Python API arrive untyped: refuse wrong types with one clear line."""
    for name, declared in config.__annotations__.items():
        value = getattr(config, name)
        base = declared.split(" |")[0].split("[")[0]
        optional = "None" in declared
        if value is None and optional:
            continue
        if base in _FIELD_TYPES:
            ok = isinstance(value, _FIELD_TYPES[base]) and not (base != "bool" and isinstance(value, bool))
        else:
            ok = isinstance(value, {"list": list, "dict": dict}[base])
            if ok and base == "list":
                ok = all(isinstance(item, str) for item in value)
            if ok and base == "dict":
                ok = all(isinstance(key, str) for key in value)
        if not ok:
            raise UserError(f"option {name} must be {declared}, got {value!r}")


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """fp32 for the reduced-precision outputs of autocast; fp64 stays fp64 (the fp64 trainer)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class Reporter(Protocol):
    def start(self, config: RunConfig, info: dict[str, Any]) -> None: ...
    def epoch_start(self, epoch: int, steps: int) -> None: ...
    def step(self, done: int, loss: float, accuracy: float, images_per_s: float) -> None: ...
    def epoch_end(self, record: dict[str, Any]) -> None: ...
    def finish(self, summary: dict[str, Any]) -> None: ...


class SilentReporter:
    def start(self, config, info): pass
    def epoch_start(self, epoch, steps): pass
    def step(self, done, loss, accuracy, images_per_s): pass
    def epoch_end(self, record): pass
    def finish(self, summary): pass


SKIPPED_STEPS_IS_DIVERGENCE = 10  # in a row, for a trainer that skips overflowed steps
DEFAULT_LR = 0.05  # for optimizers that recommend none (SGD): zoo's recipe for its CNNs


def with_default_lr(config: RunConfig, registry: Registry) -> RunConfig:
    """``config`` with its learning rate, the optimizer's recommended one if none was given."""
    if config.lr is not None:
        return config
    spec = registry.get("opt", str(config.opt).partition("=")[0].strip())
    return replace(config, lr=getattr(spec, "lr", None) or DEFAULT_LR)


def parse_choice(registry: Registry, kind: str, text: str) -> tuple[Spec, dict[str, Any]]:
    """``"rotate=15"`` -> (the rotate spec, ``{"degrees": 15}``); ``"hflip"`` -> (spec, {})."""
    name, sep, value = text.partition("=")
    spec = registry.get(kind, name.strip())
    if not sep:
        return spec, {}
    if not spec.param:
        raise UserError(f"{spec.word} {spec.name!r} takes no value (got {text!r})")
    return spec, {spec.param: parse_value(value)}


def _call(spec: Spec, *args: Any, **options: Any) -> Any:
    factory = spec.load()
    check_options(spec, factory, options, skip=len(args))
    try:
        return factory(*args, **options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{spec.word} {spec.name!r}: {exc}") from exc
    except (UserError, PluginError, MemoryError):
        raise
    except Exception as exc:  # a bug in the plugin: name it, in one line
        raise spec.failure("its factory raised", exc) from exc


class Augmenter:
    """Turns a batch of uint8 images into normalised float inputs, applying the augmentations in order."""

    def __init__(self, augs: list[Callable], mixes_labels: bool, mean, std, num_classes: int):
        self.augs, self.mixes_labels, self.num_classes = augs, mixes_labels, num_classes
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std on ``device``, copied there once: a copy per step would be a host sync per step."""
        if device not in self._on_device:
            self._on_device[device] = (self.mean.to(device), self.std.to(device))
        return self._on_device[device]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(images.device)
        return (images.float().div_(255) - mean) / std

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.float().div_(255)
        y = F.one_hot(labels, self.num_classes).float() if self.mixes_labels else labels
        for aug in self.augs:
            x, y = aug(x, y)
        mean, std = self._stats(x.device)
        return (x - mean) / std, y


@dataclass
class Run:
    """A resolved run: every name looked up and every option checked before any data is read."""

    config: RunConfig
    registry: Registry
    data_spec: Spec
    augs: list[tuple[Spec, dict[str, Any]]]
    opt: tuple[Spec, dict[str, Any]]
    sched: tuple[Spec, dict[str, Any]]
    trainer_spec: Spec

    @classmethod
    def resolve(cls, config: RunConfig, registry: Registry | None = None) -> "Run":
        registry = registry or default_registry()
        check_config_types(config)
        config = with_default_lr(config, registry)
        for name, value, low in (("epochs", config.epochs, 1), ("batch size", config.batch_size, 1),
                                 ("checkpoint_every", config.checkpoint_every, 1),
                                 ("eval batch size", config.eval_batch_size, 1)):
            if value < low:
                raise UserError(f"{name} must be a whole number >= {low}, got {value!r}")
        for name, value in (("train_limit", config.train_limit), ("test_limit", config.test_limit)):
            if value is not None and value < 1:
                raise UserError(f"{name} must be positive, got {value}")
        if not 0 <= config.seed < 2**63:
            raise UserError(f"seed must be in 0..2**63-1, got {config.seed}")
        if not (config.lr > 0 and math.isfinite(config.lr)):
            raise UserError(f"learning rate must be positive, got {config.lr}")
        if not (0 <= config.weight_decay < math.inf and 0 <= config.warmup < math.inf
                and 0 <= config.label_smoothing < 1):
            raise UserError("weight decay and warmup must be >= 0, label smoothing in [0, 1)")
        decided = sorted(set(config.model_options) & set(STANDARD_OPTIONS))
        if decided:
            raise UserError(f"the data decides {', '.join(decided)} in training; it is not a model option to set")
        check_model(config.model, registry, **config.model_options)
        opt_spec, opt_options = parse_choice(registry, "opt", config.opt)
        sched_spec, sched_options = parse_choice(registry, "sched", config.sched)
        run = cls(
            config, registry, registry.get("data", config.data),
            [parse_choice(registry, "aug", text) for text in config.augs],
            (opt_spec, {**opt_options, **config.opt_options}),
            (sched_spec, {**sched_options, **config.sched_options}),
            registry.get("trainer", config.trainer),
        )
        # Options are checked now, not after the data is loaded, by building what takes them (the
        # optimizer on a stand-in parameter, quietly: its warnings come with the real one).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run.optimizer([torch.zeros(1, requires_grad=True)])
        run.schedule()
        run.augmentations()
        return run

    def optimizer(self, params) -> torch.optim.Optimizer:
        spec, options = self.opt
        return _call(spec, params, lr=self.config.lr, weight_decay=self.config.weight_decay, **options)

    def schedule(self) -> Callable[[float], float]:
        spec, options = self.sched
        return _call(spec, epochs=self.config.epochs, **options)

    def augmentations(self) -> list[Callable]:
        return [_call(spec, **options) for spec, options in self.augs]

    def load_data(self) -> ImageData:
        root = data_root(self.config.data_dir)
        data = _call(self.data_spec, root=root, download=self.config.download)
        if self.config.train_limit or self.config.test_limit:
            data = data.subset(self.config.train_limit, self.config.test_limit, self.config.seed)
        if self.config.batch_size > len(data.train_images):
            raise UserError(f"batch size {self.config.batch_size} is larger than the {len(data.train_images)} "
                            f"training images of {data.name}")
        return data


def evaluate(model: torch.nn.Module, trainer: BaseTrainer, augmenter: Augmenter, images: torch.Tensor,
             labels: torch.Tensor, batch_size: int, num_classes: int, world: World = World()) -> dict[str, Any]:
    """Loss, accuracy and per-class accuracy over all ``images``, in inference mode. In a distributed
    run each rank evaluates its own share and the sums are added up, so every image counts once."""
    share = slice(world.rank * len(images) // world.size, (world.rank + 1) * len(images) // world.size)
    images, labels = images[share], labels[share]
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros(1, device=images.device)
    correct = torch.zeros(num_classes, device=images.device)
    with torch.inference_mode(), trainer.autocast():
        for start in range(0, len(images), batch_size):
            x = trainer.prepare_input(augmenter.normalize(images[start:start + batch_size]))
            y = labels[start:start + batch_size]
            logits = full_precision(model(x))
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct.index_add_(0, y, (logits.argmax(1) == y).float())
    model.train(was_training)
    counts = torch.bincount(labels, minlength=num_classes).float()
    distributed.all_sum(loss_sum, correct, counts)
    total = counts.sum().item()
    return {"loss": loss_sum.item() / total, "accuracy": correct.sum().item() / total,
            "per_class_accuracy": (correct / counts.clamp(min=1)).tolist()}


@dataclass
class Position:
    """Where a run is: epochs done, and within the current epoch the steps done, its order and sums."""

    epoch: int = 0
    step: int = 0
    order: torch.Tensor | None = None
    loss_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    skipped: torch.Tensor | None = None  # steps whose loss overflowed (fp16), which the trainer skipped
    seconds: float = 0.0
    skipped_before: float = 0.0  # skipped steps up to the last log step (all ranks)
    logged_step: int = 0
    skipped_in_a_row: int = 0  # steps skipped in whole log windows since the last applied one (all ranks)


class TrainingInterrupted(Exception):
    """Ctrl-C: the current step finished and a checkpoint was written."""

    def __init__(self, run_dir: Path, epoch: int, step: int):
        super().__init__(f"interrupted in epoch {epoch} after step {step}; checkpoint saved in {run_dir}")
        self.run_dir = run_dir


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


def _last_good(checkpoint: Path) -> str:
    return f"the last good checkpoint is {checkpoint}" if checkpoint.exists() else "no checkpoint was written yet"


def _unique_name(base: str, *folders_and_suffixes: tuple[Path, str]) -> str:
    name, n = base, 1
    while any((folder / f"{name}{suffix}").exists() for folder, suffix in folders_and_suffixes):
        n += 1
        name = f"{base}-{n}"
    return name


def train(config: RunConfig, registry: Registry | None = None, run_dir: str | Path | None = None,
          weights: str | Path | None = None, resume: str | Path | None = None, overwrite: bool = False,
          reporter: Reporter | None = None, log_every: int = 25) -> dict[str, Any]:
    """Train as ``config`` says; return the summary. Writes ``run_dir`` (config, metrics, checkpoint)
    and the weights file. ``resume`` is a run folder to continue. Under torchrun, each process trains
    on its share of every batch and only rank 0 reports and writes."""
    world = distributed.launched_world()
    check_config_types(config)
    config = with_default_lr(config, registry or default_registry())
    if resume is not None:
        config, run_dir, weights = _resume_config(config, Path(resume), weights)
    run = Run.resolve(config, registry)
    local_batch = distributed.split_batch(config.batch_size, world)
    trainer: BaseTrainer = _call(run.trainer_spec, **_device_for(world, config.trainer_options))
    distributed.init(world, trainer.device)
    together = False  # whether every rank ends here at the same point, and can leave the group together
    try:
        paths: tuple[Path, Path] | UserError | None = None
        if world.main:  # rank 0 alone looks at the disk; the others learn its answer, or its error
            try:
                paths = _paths(config, run_dir, weights, overwrite or resume is not None)
            except UserError as error:
                paths = error
        paths = distributed.broadcast(paths)
        if isinstance(paths, UserError):
            raise paths
        named_by_zoo = resume is None and run_dir is None and weights is None
        run_dir, weights = paths
        summary = _train(config, run, trainer, world, local_batch, run_dir, weights, resume is not None,
                         reporter if world.main and reporter else SilentReporter(), log_every,
                         overwrite=overwrite, named_by_zoo=named_by_zoo)
        together = True
        return summary
    except TrainingInterrupted:  # the ranks agree on the step to stop at
        together = True
        raise
    finally:
        distributed.shutdown(world, together)


def _portable(trainer_options: dict[str, Any]) -> dict[str, Any]:
    """The trainer options that also hold on another machine: not the device, not compilation."""
    return {k: v for k, v in trainer_options.items() if k not in ("device", "compile")}


def evaluation_trainer(registry: Registry, recorded: dict[str, Any], name: str | None = None,
                       device: str | None = None) -> BaseTrainer:
    """The trainer that trained some weights (``recorded`` is their metadata's ``trainer``), or the
    trainer ``name``, on ``device``. The same precision and memory formats reproduce the loss and
    accuracy the run reported."""
    recorded_name = recorded.get("name", "fp32")
    options = _portable(recorded.get("options", {})) if name in (None, recorded_name) else {}
    spec = registry.get("trainer", name or recorded_name)
    check_file_options(spec, spec.load(), options, source="the weights' trainer")
    try:
        return _call(spec, device=device, **options)
    except UserError as error:  # fp16 weights from a GPU on a CPU, say
        if name is not None or not options:
            raise
        raise UserError(f"{error} (the weights were trained with {recorded_name} {options}; evaluate them with "
                        "--trainer fp32)") from error


def _device_for(world: World, options: dict[str, Any]) -> dict[str, Any]:
    """Each rank of a CUDA run gets its own GPU: ``cuda`` (or nothing, with a GPU) means the rank's
    local one; an index given by the user is kept."""
    device = options.get("device")
    if world.distributed and torch.cuda.is_available() and device in (None, "cuda"):
        return {**options, "device": f"cuda:{world.local_rank}"}
    return options


def _train(config: RunConfig, run: Run, trainer: BaseTrainer, world: World, local_batch: int, run_dir: Path,
           weights: Path, resuming: bool, reporter: Reporter, log_every: int, overwrite: bool = False,
           named_by_zoo: bool = False) -> dict[str, Any]:
    run_started = time.perf_counter()  # the summary's wall time: data, evaluation and checkpoints included
    torch.manual_seed(config.seed)  # the same on every rank: one permutation, split between them
    data = run.load_data().to(trainer.device)
    model = create_model(config.model, registry=run.registry, num_classes=data.num_classes, in_chans=data.channels,
                         input_size=data.input_size, **config.model_options)
    zoo_config = model.zoo_config
    if config.sync_bn and world.distributed:
        model = distributed.convert_sync_batchnorm(model, trainer.device)
    model = prepare_model(trainer, model, tuple(data.train_images.shape[1:]), compile=not world.distributed)
    if world.distributed:  # compiled after DDP wraps it, which keeps DDP's overlap of communication
        model = trainer.compiled(distributed.wrap(model, trainer.device))
    optimizer = run.optimizer(model.parameters())
    schedule = run.schedule()
    # Without normalisation the model sees pixels in [0, 1], as the lab's ToTensor() alone gave it.
    mean, std = (data.mean, data.std) if config.normalize else ([0.0] * data.channels, [1.0] * data.channels)
    augmenter = Augmenter(run.augmentations(), any(spec.mixes_labels for spec, _ in run.augs), mean, std,
                          data.num_classes)
    steps_per_epoch = len(data.train_images) // config.batch_size
    warmup_steps = config.warmup * steps_per_epoch

    checkpoint = run_dir / "checkpoint.safetensors"
    metrics_path = run_dir / "metrics.jsonl"
    position, history = Position(), []
    if resuming and checkpoint.exists():
        position, history = _load_checkpoint(checkpoint, model, optimizer, trainer, config, steps_per_epoch,
                                             len(data.train_images))
    elif world.main:  # a new run, or one resumed before its first checkpoint: from an empty folder
        run_dir, weights = _claim_run_dir(run_dir, weights, overwrite or resuming, named_by_zoo)
        checkpoint, metrics_path = run_dir / checkpoint.name, run_dir / metrics_path.name
        atomic_write_text(run_dir / "config.json", json.dumps(
            {**asdict(config), "weights": str(weights), "zoo_version": __version__}, indent=2))
    if world.main:
        atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in history))

    info = {"run_dir": str(run_dir), "weights": str(weights), "parameters": sum(p.numel() for p in model.parameters()),
            "train_images": len(data.train_images), "test_images": len(data.test_images), "processes": world.size,
            **trainer.describe()}
    reporter.start(config, info)
    test = None
    mine = slice(world.rank * local_batch, (world.rank + 1) * local_batch)  # this rank's part of each batch
    with _InterruptFlag() as interrupted:
        for epoch in range(position.epoch, config.epochs):
            reporter.epoch_start(epoch, steps_per_epoch)
            model.train()
            if position.order is None:  # a new epoch, not one resumed half-way
                position = Position(epoch, 0, torch.randperm(len(data.train_images), device=trainer.device),
                                    *(torch.zeros((), device=trainer.device) for _ in range(3)))
            started = time.perf_counter() - position.seconds
            lr = config.lr
            for i in range(position.step, steps_per_epoch):
                step = epoch * steps_per_epoch + i
                lr = config.lr * schedule(step / steps_per_epoch) * (min(1.0, (step + 1) / warmup_steps)
                                                                     if warmup_steps else 1.0)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = position.order[i * config.batch_size:(i + 1) * config.batch_size]
                if augmenter.augs:  # drawn for the whole batch, as one process would, then this rank's part
                    x, y = augmenter(data.train_images[batch], data.train_labels[batch])
                    x, y = x[mine], y[mine]
                else:
                    x, y = augmenter(data.train_images[batch[mine]], data.train_labels[batch[mine]])
                with trainer.autocast():
                    logits = model(trainer.prepare_input(x))
                    logits = full_precision(logits)
                    loss = F.cross_entropy(logits, y.to(logits.dtype) if y.is_floating_point() else y,
                                           label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                trainer.backward_step(loss, optimizer)
                finite = torch.isfinite(loss.detach())  # an fp16 overflow the trainer skips is not divergence
                position.loss_sum += torch.where(finite, loss.detach(), 0.0)
                position.skipped += ~finite
                position.correct += (logits.detach().argmax(1) == (y.argmax(1) if y.dim() == 2 else y)).sum()
                position.step = i + 1
                logging_step = (i + 1) % log_every == 0 or i + 1 == steps_per_epoch
                if logging_step:  # the only host syncs of the epoch
                    sums = torch.stack([position.loss_sum, position.skipped.float()])
                    distributed.all_sum(sums)  # the same on every rank: a divergence stops all
                    loss_sum, skipped = sums.tolist()
                    counted = (i + 1) * world.size - skipped
                    mean_loss = loss_sum / counted if counted else math.inf
                    window = (i + 1 - position.logged_step) * world.size
                    # A trainer that skips overflowed steps (fp16 loss scaling) has diverged only when it
                    # skipped every step for a while: the scaler recovers from an overflow in a step or two.
                    position.skipped_in_a_row = (position.skipped_in_a_row + window
                                                 if skipped - position.skipped_before >= window else 0)
                    if (position.skipped_in_a_row >= SKIPPED_STEPS_IS_DIVERGENCE * world.size
                            if trainer.skips_overflow else skipped > 0):
                        raise UserError(f"the loss became infinite or NaN in epoch {epoch + 1}, step {i + 1}; "
                                        f"{_last_good(checkpoint)}; try a lower --lr, more --warmup or "
                                        f"gradient-friendlier --amp settings")
                    position.skipped_before, position.logged_step = skipped, i + 1
                    elapsed = time.perf_counter() - started
                    reporter.step(i + 1, mean_loss, position.correct.item() / ((i + 1) * local_batch),
                                  (i + 1) * config.batch_size / elapsed)
                # Ranks must agree to stop on the same step, so a distributed run asks at log steps only.
                if (logging_step or not world.distributed) and i + 1 < steps_per_epoch and \
                        distributed.any_rank(interrupted.is_set(), trainer.device):
                    position.seconds = time.perf_counter() - started
                    if world.main:
                        _save_checkpoint(checkpoint, model, optimizer, trainer, position, config, history)
                    raise TrainingInterrupted(run_dir, epoch + 1, i + 1)
            seconds = time.perf_counter() - started
            test = evaluate(model, trainer, augmenter, data.test_images, data.test_labels, config.eval_batch_size,
                            data.num_classes, world)
            eval_seconds = time.perf_counter() - started - seconds
            sums = torch.stack([position.loss_sum.float(), position.correct.float(), position.skipped.float()])
            distributed.all_sum(sums)
            counted = max(1.0, steps_per_epoch * world.size - sums[2].item())
            record = {"epoch": epoch + 1, "train_loss": sums[0].item() / counted,
                      "train_accuracy": sums[1].item() / (steps_per_epoch * config.batch_size),
                      "test_loss": test["loss"], "test_accuracy": test["accuracy"], "lr": lr, "seconds": seconds,
                      "images_per_s": steps_per_epoch * config.batch_size / seconds, "eval_seconds": eval_seconds,
                      **({"skipped_steps": int(sums[2].item())} if sums[2].item() else {})}
            history.append(record)
            position = Position(epoch + 1)
            stopping = epoch + 1 < config.epochs and distributed.any_rank(interrupted.is_set(), trainer.device)
            due = (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs or stopping
            if world.main:
                if due:
                    _save_checkpoint(checkpoint, model, optimizer, trainer, position, config, history)
                try:
                    with open(metrics_path, "a") as f:  # after the checkpoint, which holds the history too
                        f.write(json.dumps(record) + "\n")
                except OSError as exc:
                    raise UserError(f"cannot write {metrics_path}: {exc.strerror or exc}; "
                                    f"{_last_good(checkpoint)}") from exc
            reporter.epoch_end(record)
            if stopping:
                raise TrainingInterrupted(run_dir, epoch + 1, steps_per_epoch)

    if test is None:  # resumed a run that had already finished
        test = evaluate(model, trainer, augmenter, data.test_images, data.test_labels, config.eval_batch_size,
                        data.num_classes, world)
    final = history[-1]
    if world.main:
        _save_weights_of_run(
            _unwrap(model, zoo_config), weights, run_dir, overwrite or resuming, classes=list(data.classes),
            mean=list(mean), std=list(std), dataset=data.name, in_chans=data.channels, input_size=data.input_size,
            padded_from=data.padded_from, num_classes=data.num_classes, metrics=final,
            per_class_accuracy=test["per_class_accuracy"], parameters=info["parameters"], processes=world.size,
            trainer={"name": run.trainer_spec.name, "options": _portable(config.trainer_options), **trainer.describe()},
            run=str(run_dir))
    summary = {"model": config.model, "data": data.name, "epochs": config.epochs, "test_accuracy":
               final["test_accuracy"], "test_loss": final["test_loss"], "seconds": sum(r["seconds"] for r in history),
               "wall_seconds": time.perf_counter() - run_started,
               "weights": str(weights), "run_dir": str(run_dir), "parameters": info["parameters"],
               "processes": world.size}
    reporter.finish(summary)
    return summary


def _save_weights_of_run(model: torch.nn.Module, weights: Path, run_dir: Path, replace: bool, **info: Any) -> None:
    """The run's weights where it was asked to write them; if another run took that file meanwhile,
    in the run folder, so that an hour of training is never lost."""
    _check_finite(model.state_dict(), run_dir / "checkpoint.safetensors", "the end", "the last")
    try:
        save_weights(model, weights, replace=replace, **info)
    except FileExistsError:
        kept = save_weights(model, run_dir / "weights.safetensors", **info)
        raise UserError(f"{weights} was written by another run meanwhile and is left as it is; this run's weights "
                        f"are in {kept}") from None


def _check_finite(state: dict[str, torch.Tensor], checkpoint: Path, epoch: int, step: int) -> None:
    """Never write non-finite weights: a run that diverged stops with what it last saved."""
    if not all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()):
        raise UserError(f"the weights became infinite or NaN by epoch {epoch}, step {step}: the run diverged; "
                        f"{_last_good(checkpoint)}; try a lower --lr, more --warmup or less --wd")


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DistributedDataParallel and torch.compile wrappers."""
    from torch.nn.parallel import DistributedDataParallel

    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def _unwrap(model: torch.nn.Module, zoo_config: dict[str, Any]) -> torch.nn.Module:
    inner = _inner(model)
    inner.zoo_config = zoo_config
    return inner


def _paths(config: RunConfig, run_dir, weights, overwrite: bool) -> tuple[Path, Path]:
    """The run folder and weights file of a new run, absolute, checked but not made: a user error that
    stops the run must leave nothing behind. Default names are claimed when the run starts writing."""
    if run_dir is None and weights is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        data = config.data.rpartition(":")[2]
        name = _unique_name(f"{config.model.replace(':', '_').replace('/', '_')}-{data}-{stamp}",
                            (Path("runs"), ""), (Path("weights"), ".safetensors"))
        run_dir, weights = Path("runs") / name, Path("weights") / f"{name}.safetensors"
    if weights is None:
        weights = Path("weights") / f"{Path(run_dir).name}.safetensors"
    weights = Path(weights).absolute()
    run_dir = (Path("runs") / weights.stem if run_dir is None else Path(run_dir)).absolute()
    for path in (weights, run_dir):
        _check_name_lengths(path)
    if not overwrite:
        for path, option in ((weights, "--out"), (run_dir, "--run-dir")):
            if path.exists():
                raise UserError(f"{path} exists; choose another {option} or pass --overwrite")
    for folder in (weights.parent, run_dir.parent):  # checked now, made when the run writes there
        _check_writable(folder)
    return run_dir, weights


def _check_name_lengths(path: Path) -> None:
    """Refuse now a name the file system would refuse after an hour of training."""
    for part in path.parts:
        if len(os.fsencode(part)) + len(".checkpoint.safetensors.XXXXXXXX.tmp") > 255:
            raise UserError(f"the name {part[:40]}... is too long for a file name ({len(os.fsencode(part))} bytes)")


ZOO_RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.safetensors")


def _claim_run_dir(run_dir: Path, weights: Path, overwrite: bool, named_by_zoo: bool) -> tuple[Path, Path]:
    """Make the run folder, atomically, so that two runs never share one. A default name taken since
    the run started moves on to the next free one; a folder given with --overwrite is emptied of
    zoo's files (and refused if it holds others)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    base, n = run_dir.name, 1
    while True:
        try:
            run_dir.mkdir()
            return run_dir, weights
        except FileExistsError:
            if named_by_zoo:
                n += 1
                run_dir = run_dir.with_name(f"{base}-{n}")
                weights = weights.with_name(f"{base}-{n}.safetensors")
                continue
            if not overwrite:
                raise UserError(f"{run_dir} exists (another run made it); choose another --run-dir or pass "
                                "--overwrite") from None
            _empty_run_dir(run_dir)
            return run_dir, weights


def _empty_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder; choose another --run-dir")
    entries = list(run_dir.iterdir())
    foreign = [p.name for p in entries if p.name not in ZOO_RUN_FILES and not _is_temporary(p)]
    if foreign:
        raise UserError(f"--overwrite: {run_dir} holds files zoo did not write ({', '.join(sorted(foreign)[:3])}); "
                        "choose another --run-dir")
    for path in entries:
        path.unlink()


def _is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _check_writable(folder: Path) -> None:
    """Whether ``folder`` could be made and written to, without making it: a user error that stops the
    run must leave nothing behind."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"cannot write to {folder}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to {folder}: permission denied")


def _resume_config(config: RunConfig, run_dir: Path, weights: str | Path | None) -> tuple[RunConfig, Path, Path]:
    if run_dir.is_file():
        run_dir = run_dir.parent
    run_dir = run_dir.absolute()
    try:
        saved = parse_json(regular_file(run_dir / "config.json", "run config").read_text(), f"{run_dir}/config.json")
        if not isinstance(saved, dict) or not isinstance(saved.get("weights"), str):
            raise UserError(f"{run_dir}/config.json is not a run's config")
    except (UserError, OSError) as exc:
        raise UserError(f"cannot resume: {run_dir} is not a run folder (no readable config.json); --resume takes "
                        "a run folder such as runs/<run>") from exc
    recorded = Path(saved.pop("weights"))
    if not recorded.is_absolute():  # written before paths were recorded whole: runs/<run> beside weights/
        if run_dir.parent.name != "runs":
            raise UserError(f"cannot tell where {run_dir} writes its weights ({recorded}, relative); resume it from "
                            "the folder it was started in")
        recorded = run_dir.parent.parent / recorded
    if weights is not None and Path(weights).absolute() != recorded:
        raise UserError(f"{run_dir} writes its weights to {recorded}; resume it without --out")
    for key in ("zoo_version", "versions"):
        saved.pop(key, None)
    known = set(RunConfig.__dataclass_fields__)
    try:
        previous = RunConfig(**{k: v for k, v in saved.items() if k in known})
    except TypeError as exc:
        raise UserError(f"cannot resume: {run_dir}/config.json is damaged ({exc})") from exc
    differ = [k for k in known if k not in RunConfig.RESUMABLE_CHANGES
              and json.dumps(getattr(previous, k)) != json.dumps(getattr(config, k))]
    if differ:
        raise UserError(f"cannot resume {run_dir}: it was run with other {', '.join(sorted(differ))} "
                        f"(e.g. {differ[0]}={getattr(previous, differ[0])!r})")
    if recorded.exists() and read_header(recorded)[1].get("run") != str(run_dir):
        raise UserError(f"{recorded} was not written by {run_dir}; zoo will not replace it")
    return config, run_dir, recorded


def _save_checkpoint(path: Path, model, optimizer, trainer: BaseTrainer, position: Position,
                     config: RunConfig, history: list[dict[str, Any]]) -> None:
    state = clean_state_dict(model)
    _check_finite(state, path, position.epoch + (position.step == 0), position.step or "the last")
    tensors = {f"model.{k}": v for k, v in state.items()}
    tensors["rng.cpu"] = torch.get_rng_state()
    if trainer.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(trainer.device)
    for name in ("order", "loss_sum", "correct", "skipped"):
        if getattr(position, name) is not None:
            tensors[f"position.{name}"] = getattr(position, name).detach().to("cpu").contiguous()
    document = {"epoch": position.epoch, "step": position.step, "seconds": position.seconds,
                "optimizer": _lift_tensors(optimizer.state_dict(), "optimizer", tensors),
                "trainer": _lift_tensors(trainer.state_dict(), "trainer", tensors),
                "model": config.model, "history": history, "zoo_version": __version__}
    atomic_save(tensors, path, {"zoo": json.dumps(document)})


def _lift_tensors(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``value`` as JSON: each tensor inside moves to ``tensors[key...]``, leaving a reference to it,
    and dtypes and tuples are marked to come back as they were. Optimizers keep all of these anywhere
    in their state (timm's lamb, adafactorbv, kron)."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, dict):
        return {str(k): _lift_tensors(v, f"{key}.{k}", tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_lift_tensors(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, tuple):  # kron's random.getstate() must come back a tuple
        return {"__tuple__": _lift_tensors(list(value), key, tensors)}
    return value


def _restore_tensors(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__dtype__" in value:
            dtype = getattr(torch, str(value["__dtype__"]), None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"{value['__dtype__']!r} is not a dtype")
            return dtype
        if "__tuple__" in value:
            return tuple(_restore_tensors(value["__tuple__"], tensors))
        return {k: _restore_tensors(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_tensors(v, tensors) for v in value]
    return value


def _load_checkpoint(path: Path, model, optimizer, trainer: BaseTrainer, config: RunConfig, steps_per_epoch: int,
                     train_images: int) -> tuple[Position, list[dict[str, Any]]]:
    """Restore a run from its checkpoint. A checkpoint is untrusted like any file: every field is
    checked, and anything that does not fit this run is one clear error."""
    tensors, document = read_safetensors(path, "checkpoint")
    try:
        position, history = _checked_position(document, tensors, config, steps_per_epoch, train_images)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UserError(f"{path} is not a checkpoint of this run, or it is corrupt ({type(exc).__name__}: "
                        f"{str(exc)[:80]})") from exc
    model_state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    try:
        _inner(model).load_state_dict(model_state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{path} holds weights of another model ({str(exc).splitlines()[0]})") from exc
    try:
        optimizer_state = _restore_tensors(document["optimizer"], tensors)
        optimizer_state["state"] = {int(index): state for index, state in optimizer_state["state"].items()}
        optimizer.load_state_dict(optimizer_state)  # places each tensor on its parameter's device
        trainer.load_state_dict(_restore_tensors(document.get("trainer", {}), tensors))
        torch.set_rng_state(tensors["rng.cpu"])
        if "rng.cuda" in tensors and trainer.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], trainer.device)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as exc:
        raise UserError(f"{path}: the optimizer or random state does not fit this run, or it is corrupt "
                        f"({type(exc).__name__}: {str(exc).strip()[:80]})") from exc
    # ... but not in its memory format: state made with zeros_like(param) was channels_last, and a
    # reduction over it (lamb's trust ratio) sums in another order in another format
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
    if position.order is not None:
        position.order, position.loss_sum, position.correct, position.skipped = (
            t.to(trainer.device) for t in (position.order, position.loss_sum, position.correct, position.skipped))
    return position, history


def _checked_position(document: dict[str, Any], tensors: dict[str, torch.Tensor], config: RunConfig,
                      steps_per_epoch: int, train_images: int) -> tuple[Position, list[dict[str, Any]]]:
    epoch, step, seconds, history = document["epoch"], document.get("step", 0), document.get("seconds", 0.0), \
        document["history"]
    if type(epoch) is not int or not 0 <= epoch <= config.epochs:
        raise ValueError(f"epoch {epoch!r} is not in 0..{config.epochs}")
    if type(step) is not int or not 0 <= step < steps_per_epoch:
        raise ValueError(f"step {step!r} is not in 0..{steps_per_epoch - 1}")
    if not isinstance(seconds, (int, float)) or not 0 <= seconds < 1e9:
        raise ValueError(f"seconds {seconds!r}")
    if not isinstance(history, list) or len(history) != epoch or not all(isinstance(r, dict) for r in history):
        raise ValueError(f"a history of {epoch} epochs")
    if document.get("model") != config.model:
        raise ValueError(f"it is a checkpoint of {document.get('model')!r}")
    position = Position(epoch, step, seconds=float(seconds))
    if step:
        order = tensors["position.order"]
        if order.dtype != torch.int64 or tuple(order.shape) != (train_images,) or not torch.equal(
                order.sort().values, torch.arange(train_images)):
            raise ValueError(f"the sample order is not a permutation of the {train_images} training images")
        position.order, position.loss_sum, position.correct, position.skipped = (
            order, tensors["position.loss_sum"].reshape(()), tensors["position.correct"].reshape(()),
            tensors.get("position.skipped", torch.zeros(())).reshape(()))
    return position, history
