"""What defines a training run (``RunConfig``, the run's ``config.json``) and its resolution: every
name looked up and every option checked before any data is read."""
from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.images import ImageData, data_root
from ..base.errors import UserError
from ..registry.factories import STANDARD_OPTIONS, call_factory, check_config_file_options, check_options, guarded
from ..models.build import check_model
from ..base.options import parse_value
from ..base.typed import spelled, wrong_fields
from ..registry.catalog import GivenObject, Registry, default_registry
from ..registry.specs import Spec, split_qualified
from ..base.files import parse_json, read_bounded, regular_file
from ..io.pretrained import RegisteredWeights, WeightsFile, trained_preprocessing
from .progress import Reporters

CONSOLE = "zoo:console"  # the core's logger, always on in zoo train


@dataclass
class RunConfig:
    """Everything that defines a training run; saved as the run's ``config.json``."""

    model: str = "resnet18"
    # None: what the installed plugins declare default (cifar10; crop, hflip; sgd-nesterov; cosine), recorded
    # by its qualified name when the run starts.
    data: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)  # the dataset's own (image_size, stream, ...)
    augs: list[str] | None = None  # names, in order; [] for none
    aug_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # by name: {"crop": {"padding": 2}}
    opt: str | None = None
    opt_options: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None  # None: the optimizer's recommended rate, else DEFAULT_LR
    weight_decay: float = 5e-4
    decay_all: bool = False  # weight decay on biases and normalisation weights too (the lab's; not timm's)
    sched: str | None = None
    sched_options: dict[str, Any] = field(default_factory=dict)
    warmup: float = 1.0
    epochs: int = 30
    batch_size: int = 128
    eval_batch_size: int = 512
    label_smoothing: float = 0.0
    normalize: bool = True  # inputs normalised by the data's mean and std; False: pixels in [0, 1]
    checkpoint_every: int = 1  # epochs; a run always checkpoints its last epoch and when it is interrupted
    sync_bn: bool = False
    trainer: str = "zoo:fp32"
    trainer_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None  # "default" or a weights tag: start from registered weights
    init: str | None = None  # start from a zoo weights file (an earlier run's)
    freeze_epochs: int = 0  # epochs that train the classifier alone, at the start of a fine-tuning
    seed: int = 0
    train_limit: int | None = None
    test_limit: int | None = None
    data_dir: str | None = None
    download: bool = True
    loggers: list[str] = field(default_factory=list)  # beside the console: csv, tensorboard, wandb, ...
    logger_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # by name: {"wandb": {"project": "x"}}

    # Fields that may differ when a run is resumed: where things are, not what is computed.
    RESUMABLE_CHANGES = ("data_dir", "download", "epochs", "eval_batch_size", "checkpoint_every", "loggers",
                         "logger_options")
    # What a run's config.json records beside the fields: where it writes, and what reproduces it.
    RECORDED = ("weights", "zoo_version", "provenance")

    def starting_weights(self) -> RegisteredWeights | WeightsFile | None:
        """What the run starts from: registered weights (``pretrained``), a weights file (``init``) or nothing."""
        if self.init is not None:
            return WeightsFile(Path(self.init))
        if self.pretrained is not None:
            return RegisteredWeights(None if self.pretrained == "default" else self.pretrained)
        return None

    @classmethod
    def from_file(cls, path: str | Path, registry: Registry | None = None) -> "RunConfig":
        """A config from a JSON file: a run's ``config.json`` or what ``zoo train --print-config``
        printed (older files may hold the command line's shorthand, ``"crop=4"``, read as its structure).
        The file is untrusted: unknown keys and wrong types are one clear error."""
        document = cls.read_file(path)
        config = cls(**expand_shorthand({k: v for k, v in document.items() if k not in cls.RECORDED}, registry))
        check_config_types(config)
        check_config_file_options(config.model, config.model_options, registry or default_registry(), str(path))
        return config

    @classmethod
    def read_file(cls, path: str | Path) -> dict[str, Any]:
        """A config file's JSON table as written, its size, shape and keys checked."""
        document = parse_json(read_bounded(Path(path), "run config", 1 << 20, "a run config"), f"{path}")
        if not isinstance(document, dict):
            raise UserError(f"{path} is not a run config (a JSON table of a run's options)")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(document) - names - set(cls.RECORDED))
        if unknown:
            raise UserError(f"{path}: unknown option {', '.join(unknown)}; options are {', '.join(sorted(names))}")
        return document


def check_config_types(config: RunConfig) -> None:
    """Values from files and the Python API arrive untyped: refuse wrong types with one clear line."""
    for name, hint, value in wrong_fields(config)[:1]:
        raise UserError(f"option {name} must be {spelled(hint)}, got {value!r}")


DEFAULT_LR = 0.05  # for optimizers that recommend none (SGD): zoo's recipe for its CNNs


def with_defaults(config: RunConfig, registry: Registry) -> RunConfig:
    """``config`` with the defaults the installed plugins declare (dataset, augmentations, optimizer,
    schedule) and those that depend on other choices: the optimizer's recommended learning rate when
    none was given; the image size and evaluation crop pretrained weights were trained with, when the
    dataset takes them and none were given."""
    for name, values in (("opt", [config.opt]), ("sched", [config.sched]), ("augs", config.augs or []),
                         ("loggers", config.loggers)):
        shorthand = next((value for value in values if value is not None and "=" in value), None)
        if shorthand is not None:
            option_field = {"augs": "aug_options", "loggers": "logger_options"}.get(name, f"{name}_options")
            raise UserError(f"`{name}` takes names, not {shorthand!r} (the command line's shorthand): give "
                            f"{shorthand.partition('=')[0].strip()!r} and its options in `{option_field}`")
    chosen = {name: registry.default_of(kind).qualified_name
              for name, kind in (("data", "data"), ("opt", "opt"), ("sched", "sched")) if getattr(config, name) is None}
    if config.augs is None:
        chosen["augs"] = [spec.qualified_name for spec in registry.items("aug") if spec.default]
    config = replace(config, **chosen)
    if config.lr is None:
        spec = registry.get("opt", config.opt)
        config = replace(config, lr=getattr(spec, "lr", None) or DEFAULT_LR)
    if config.pretrained is not None and GivenObject.named(config.data) is None:  # a given dataset is as it is
        takes = inspect.signature(registry.get("data", config.data).load()).parameters
        wanted = [key for key in ("image_size", "crop_pct") if key in takes and key not in config.data_options]
        if wanted:
            trained = trained_preprocessing(config.model, config.starting_weights(), registry)
            config = replace(config, data_options={**config.data_options,
                                                   **{k: trained[k] for k in wanted if k in trained}})
    return config


def parse_choice(registry: Registry | None, kind: str, text: str) -> tuple[str, dict[str, Any]]:
    """The shorthand of the command line and experiment files for a choice and its one declared option:
    ``"rotate=15"`` -> ``("rotate", {"degrees": 15})``; ``"hflip"`` -> ``("hflip", {})``."""
    name, sep, value = text.partition("=")
    if not sep:
        return text, {}
    spec = (registry or default_registry()).get(kind, name.strip())
    if not spec.param:
        raise UserError(f"{spec.word} {spec.name!r} takes no value (got {text!r})")
    return name.strip(), {spec.param: parse_value(value)}


def expand_shorthand(values: dict[str, Any], registry: Registry | None = None,
                     over: dict[str, Any] | None = None) -> dict[str, Any]:
    """RunConfig fields as the command line and experiment files give them (``sched="multistep=[20,30]"``,
    ``augs=["crop=4"]``) as RunConfig holds them: names, and options in ``sched_options``/``aug_options``.
    Options given beside the shorthand win. A choice given without its options gets only the
    shorthand's, unless ``over`` (the fields these are layered over: an experiment's base) has options
    for it: a schedule named again, an augmentation kept, keeps them there."""
    over = over or {}
    values = dict(values)
    for name in ("opt", "sched"):
        if isinstance(values.get(name), str):
            values[name], options = parse_choice(registry, name, values[name])
            kept = over.get(f"{name}_options") if _bare(over.get(name)) == _bare(values[name]) else None
            given = values.get(f"{name}_options", {})
            values[f"{name}_options"] = ({**(kept if isinstance(kept, dict) else {}), **options, **given}
                                         if isinstance(given, dict) else given)
    for name, kind, options_field in (("augs", "aug", "aug_options"), ("loggers", "logger", "logger_options")):
        if isinstance(values.get(name), list):
            values[name], values[options_field] = _expand_list(values[name], values.get(options_field, {}), kind,
                                                               over.get(options_field), registry)
    return values


def _expand_list(texts: list[Any], given: Any, kind: str, previous: Any,
                 registry: Registry | None) -> tuple[list[Any], Any]:
    """A list of choices in shorthand (``["crop=4", "hflip"]``) as names and their options, over the
    options ``previous`` held for the names kept."""
    kept = {_bare(name): these for name, these in previous.items()
            if isinstance(these, dict)} if isinstance(previous, dict) else {}
    names, options = [], {}
    for text in texts:
        name, these = parse_choice(registry, kind, text) if isinstance(text, str) else (text, {})
        names.append(name)
        these = {**(kept.get(_bare(name), {}) if isinstance(name, str) else {}), **these}
        if these:
            options[name] = {**options.get(name, {}), **these}
    return names, merge_options(options, given) if isinstance(given, dict) else given


def merge_options(kept: dict[str, Any], changed: dict[str, Any]) -> dict[str, Any]:
    """``changed`` over ``kept``, one level down too: a table's keys (``se.reduction``, an
    augmentation's options) over that table's others."""
    return {**kept, **{key: {**kept[key], **value} if isinstance(value, dict) and isinstance(kept.get(key), dict)
                       else value for key, value in changed.items()}}


def _bare(name: Any) -> Any:
    """``augment:crop`` -> ``crop``: a name as given or as recorded, qualified by its plugin."""
    return split_qualified(name)[1] if isinstance(name, str) else name


# What zoo passes to a factory itself: an option of the same name would collide with it.
RESERVED_OPTIONS = {"opt_options": {"lr": "`lr`", "weight_decay": "`weight_decay`"},
                    "sched_options": {"epochs": "`epochs`"},
                    "data_options": {"root": "`data_dir`", "download": "`download`"}}


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float (lr = 10**400 in a config)
        return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:20] + "..." + text[-8:]


def _check_values(config: RunConfig) -> None:
    """Each value in its range, and the choices that exclude each other not both made."""
    for name, value, low in (("epochs", config.epochs, 1), ("batch size", config.batch_size, 1),
                             ("checkpoint_every", config.checkpoint_every, 1),
                             ("eval batch size", config.eval_batch_size, 1)):
        if value < low:
            raise UserError(f"{name} must be a whole number >= {low}, got {value!r}")
    for name, value in (("train_limit", config.train_limit), ("test_limit", config.test_limit)):
        if value is not None and value < 1:
            raise UserError(f"`{name}` must be positive, got {value}")
    if not 0 <= config.seed < 2**63:
        raise UserError(f"seed must be in 0..2**63-1, got {config.seed}")
    if not (config.lr > 0 and _finite(config.lr)):
        raise UserError(f"learning rate must be positive and finite, got {_short(config.lr)}")
    if not (0 <= config.weight_decay and _finite(config.weight_decay) and 0 <= config.warmup and
            _finite(config.warmup) and 0 <= config.label_smoothing < 1):
        raise UserError("weight decay and warmup must be finite and >= 0, label smoothing in [0, 1)")
    for field_name, set_by in RESERVED_OPTIONS.items():
        taken = sorted(set(getattr(config, field_name)) & set(set_by))
        if taken:
            raise UserError(f"`{field_name}` may not set {taken[0]}: zoo sets it from {set_by[taken[0]]}")
    if config.pretrained is not None and config.init is not None:
        raise UserError("start from pretrained weights or from a weights file (init), not both")
    if not 0 <= config.freeze_epochs <= config.epochs:
        raise UserError(f"freeze epochs must be in 0..{config.epochs} (the epochs), got {config.freeze_epochs}")
    if config.freeze_epochs and config.pretrained is None and config.init is None:
        raise UserError("freeze epochs keep trained weights fixed: give pretrained weights or a weights file")
    if config.init is not None:
        regular_file(Path(config.init), "weights")
    decided = sorted(set(config.model_options) & set(STANDARD_OPTIONS))
    if decided:
        raise UserError(f"the data decides {', '.join(decided)} in training; it is not a model option to set")


def _chosen(config: RunConfig, registry: Registry, kind: str, names_field: str,
            options_field: str) -> list[tuple[Spec, dict[str, Any]]]:
    """Each spec a list field names (``augs``, ``loggers``), in order, with its options from the
    field of their options, by name."""
    specs = [registry.get(kind, name) for name in getattr(config, names_field)]
    chosen = {spec.qualified_name for spec in specs}
    if len(chosen) < len(specs):
        word = specs[0].word
        raise UserError(f"`{names_field}` names {'an' if word[0] in 'aeiou' else 'a'} {word} twice: "
                        f"{getattr(config, names_field)}")
    options = {}
    for name, these in getattr(config, options_field).items():
        spec = registry.get(kind, name)
        if spec.qualified_name not in chosen:
            raise UserError(f"`{options_field}` sets options of {name!r}, which is not among the {spec.word}s "
                            f"({', '.join(getattr(config, names_field)) or 'none'})")
        options[spec.qualified_name] = these
    return [(spec, options.get(spec.qualified_name, {})) for spec in specs]


@dataclass
class Run:
    """A resolved run: every name looked up and every option checked before any data is read."""

    config: RunConfig
    registry: Registry
    data_spec: Spec | None  # None for a dataset given as an object
    augs: list[tuple[Spec, dict[str, Any]]]
    opt: tuple[Spec, dict[str, Any]]
    sched: tuple[Spec, dict[str, Any]]
    trainer_spec: Spec
    model_object: torch.nn.Module | None = None  # given to zoo.train instead of a model name
    data_object: Any = None  # an ImageData or ImageFiles given to zoo.train instead of a dataset name
    loggers: list[tuple[Spec, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def resolve(cls, config: RunConfig, registry: Registry | None = None, model: torch.nn.Module | None = None,
                data: Any = None) -> "Run":
        """``model`` and ``data`` are objects given in place of the config's names (which then record
        them as ``python:<what>``)."""
        registry = registry or default_registry()
        check_config_types(config)
        return cls.decided(with_defaults(config, registry), registry, model, data)

    @classmethod
    def decided(cls, config: RunConfig, registry: Registry, model: torch.nn.Module | None = None,
                data: Any = None) -> "Run":
        """:meth:`resolve` of a config whose types are checked and whose defaults are decided
        (:func:`with_defaults`): what ``zoo.train`` does, which decides them once, before a resume."""
        _check_values(config)
        if model is not None and (config.pretrained or config.init or config.model_options):
            raise UserError("a model given as a module is trained as it is: load its starting weights and set its "
                            "options before giving it (pretrained, init and model options build a model by name)")
        if data is not None and config.data_options:
            raise UserError("a dataset given as an object is used as it is (data options configure a dataset by name)")
        if model is None:
            check_model(config.model, registry, **config.model_options)
        data_spec = registry.get("data", config.data) if data is None else None
        if data_spec is not None:
            check_options(data_spec, data_spec.load(), config.data_options)
        run = cls(config, registry, data_spec, _chosen(config, registry, "aug", "augs", "aug_options"),
                  (registry.get("opt", config.opt), dict(config.opt_options)),
                  (registry.get("sched", config.sched), dict(config.sched_options)),
                  registry.get("trainer", config.trainer), model, data,
                  _chosen(config, registry, "logger", "loggers", "logger_options"))
        # Options are checked now, not after the data is loaded, by building what takes them (the
        # optimizer on a stand-in parameter, quietly: its warnings come with the real one).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run.optimizer([torch.zeros(1, requires_grad=True)])
        run.schedule()
        run.augmentations()
        return run

    def optimizer(self, params) -> torch.optim.Optimizer:
        """The optimizer over ``params``, or over a model's parameters with biases and normalisation
        weights exempt from weight decay (timm's and torchvision's recipes) unless ``decay_all``."""
        spec, options = self.opt
        if isinstance(params, torch.nn.Module) and not self.config.decay_all:
            decay, exempt = [], []
            for name, param in params.named_parameters():
                if param.requires_grad:
                    (exempt if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
            params = [{"params": decay}, {"params": exempt, "weight_decay": 0.0}]
        elif isinstance(params, torch.nn.Module):
            params = params.parameters()
        return call_factory(spec, params, lr=self.config.lr, weight_decay=self.config.weight_decay, **options)

    def schedule(self) -> Callable[[float], float]:
        spec, options = self.sched
        return guarded(spec, call_factory(spec, epochs=self.config.epochs, **options), "raised while training")

    def augmentations(self) -> list[Callable]:
        """Each augmentation, its errors while training named as its plugin's."""
        return [guarded(spec, call_factory(spec, **options), "raised while training")
                for spec, options in self.augs]

    def reporters(self, console: Any) -> Reporters:
        """``console`` and the run's loggers, built now so that a bad option stops the run before it
        starts; a logger that fails later is dropped with a warning."""
        built = {spec.qualified_name: call_factory(spec, **options) for spec, options in self.loggers
                 if spec.qualified_name != CONSOLE}
        return Reporters({"console": console, **built})

    def load_data(self) -> ImageData:
        """The run's data, its subset taken and its batch size checked."""
        return self.subset(self.dataset(self.config.download))

    def dataset(self, download: bool) -> ImageData:
        """The whole dataset; ``download`` False: never fetched (where it is missing, the dataset's error)."""
        if self.data_object is not None:
            return self.data_object
        return call_factory(self.data_spec, root=data_root(self.config.data_dir), download=download,
                            **self.config.data_options)

    def subset(self, data: ImageData) -> ImageData:
        if self.config.train_limit or self.config.test_limit:
            data = data.subset(self.config.train_limit, self.config.test_limit, self.config.seed)
        if self.config.batch_size > len(data.train_labels):
            raise UserError(f"batch size {self.config.batch_size} is larger than the {len(data.train_labels)} "
                            f"training images of {data.name}")
        return data
