"""The small, frozen records that plugins return from their hooks.

They never import torch: a factory is either a callable or a lazy ``"module:attr"`` string that is
imported only when the item is built, so listing stays fast.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Union

from ..base.errors import PluginError, described

Factory = Union[str, Callable[..., Any]]


def split_qualified(name: str) -> tuple[str, str]:
    """``"augment:crop"`` -> ``("augment", "crop")``; a bare ``"crop"`` -> ``("", "crop")``: a name as
    given, or as a run records it, qualified by its plugin."""
    plugin, _, bare = name.rpartition(":")
    return plugin, bare


@dataclass(frozen=True)
class Spec:
    """Fields every item has. ``plugin`` is filled in by the registry, not by the plugin.

    ``options`` are keyword arguments bound to the factory before the user's own, so one factory
    can serve many names (``vgg16`` is ``vgg`` with ``config="D"``). ``param`` names the option that
    ``NAME=VALUE`` sets on the command line (``--aug rotate=15``, ``--sched multistep=[20,30,40]``).
    """

    name: str
    factory: Factory
    summary: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    param: str = ""
    plugin: str = ""
    # A weights file may set only options the factory names in its signature, of plain types. These
    # two fields adjust that: options that fetch, read or name files (timm's ``pretrained``) are never
    # taken from a file, and options a ``**kwargs`` factory forwards are refused unless listed here.
    unsafe_options: tuple[str, ...] = ()
    safe_kwargs: tuple[str, ...] = ()
    kind: ClassVar[str] = ""
    word: ClassVar[str] = ""  # the kind in prose, for messages
    hook: ClassVar[str] = ""  # the hook that returns specs of this kind
    # How zoo calls the factory and what it returns: docs/plugins.md's table of hooks is these lines.
    contract: ClassVar[str] = ""

    def failure(self, what: str, exc: BaseException) -> Exception:
        """The one-line error for a plugin's item that fails: names the plugin and the item."""
        return PluginError(f"plugin {self.plugin!r}, {self.word} {self.name!r}: {what} "
                           f"({described(exc)})")

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"

    @property
    def package(self) -> str:
        """The top-level package of the factory's code: what a traceback's frames there ran is this item's."""
        factory = self.factory
        module = factory.partition(":")[0] if isinstance(factory, str) else \
            getattr(getattr(factory, "func", factory), "__module__", None) or ""
        return module.partition(".")[0]

    def load(self) -> Callable[..., Any]:
        """The factory with its bound options, importing it if it is a ``"module:attr"`` string."""
        target = self.resolve(self.factory, "factory")
        return functools.partial(target, **self.options) if self.options else target

    def resolve(self, target: Factory, what: str) -> Callable[..., Any]:
        """``target`` itself, or what its ``"module:attr"`` string names, imported now."""
        if callable(target):
            return target
        module_name, _, attr = target.partition(":")
        try:
            with contextlib.redirect_stdout(sys.stderr):  # stdout holds answers (--json); a plugin's prints are not
                found: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                found = getattr(found, part)
        except Exception as exc:  # a typo in the plugin's "module:attr", or its import failing
            raise self.failure(f"cannot import its {what} {target!r}", exc) from exc
        return found


@dataclass(frozen=True)
class Architecture(Spec):
    """A network. ``factory(**kwargs)`` returns an ``nn.Module``.

    ``attention_sites`` names where the factory's ``attn_layer``/``attn_site`` arguments can put an
    attention block (e.g. ``("block",)`` or ``("conv", "stage")``); empty means the factory takes no
    attention layer and wrappers must use surgery. ``input_size`` is the default square input side.
    """

    family: str = ""
    attention_sites: tuple[str, ...] = ()
    input_size: int = 224
    kind: ClassVar[str] = "arch"
    hook: ClassVar[str] = "architectures"
    contract: ClassVar[str] = ('`factory(num_classes=, in_chans=, input_size=, **options)` -> `nn.Module`; blocks placed '
                               'in its attention slot (`attn_layer`) keep their own layers and init: it initialises only '
                               'the modules it made')
    word: ClassVar[str] = "architecture"


@dataclass(frozen=True)
class Wrapper(Spec):
    """Composes with an architecture by name: ``<wrapper>-<arch>``.

    ``factory(build, arch, **options)`` returns the wrapped model; ``build(**extra)`` builds the
    inner model with the user's options plus ``extra``; ``arch`` is the inner :class:`Architecture`.
    """

    kind: ClassVar[str] = "wrapper"
    hook: ClassVar[str] = "wrappers"
    contract: ClassVar[str] = '`factory(build, arch, **options)` -> `nn.Module`; `build(**extra)` builds the inner model'
    word: ClassVar[str] = "wrapper"


@dataclass(frozen=True)
class Augmentation(Spec):
    """``factory(**options)`` returns ``aug(x, y) -> (x, y)`` working on a float batch in [0, 1] of
    shape (N, C, H, W), the training loop's own: it may be changed in place. ``mixes_labels``
    augmentations receive and return soft labels (N, classes)."""

    mixes_labels: bool = False
    default: bool = False  # in the augmentations of a run that names none, in the order listed
    kind: ClassVar[str] = "aug"
    hook: ClassVar[str] = "augmentations"
    contract: ClassVar[str] = '`factory(**options)` -> `aug(x, y) -> (x, y)` on a float batch in [0, 1]'
    word: ClassVar[str] = "augmentation"


@dataclass(frozen=True)
class Optimizer(Spec):
    """``factory(params, lr=..., weight_decay=..., **options)`` returns a ``torch.optim.Optimizer``.

    ``lr`` is the peak learning rate it trains well with, used when the user gives none."""

    lr: float | None = None
    default: bool = False  # the optimizer of a run that names none

    kind: ClassVar[str] = "opt"
    hook: ClassVar[str] = "optimizers"
    contract: ClassVar[str] = '`factory(params, lr=, weight_decay=, **options)` -> `torch.optim.Optimizer`'
    word: ClassVar[str] = "optimizer"


@dataclass(frozen=True)
class Scheduler(Spec):
    """``factory(epochs=..., **options)`` returns ``factor(t) -> float``: the learning-rate multiplier
    at time ``t`` measured in epochs (a float, so schedules may change within an epoch)."""

    default: bool = False  # the schedule of a run that names none
    kind: ClassVar[str] = "sched"
    hook: ClassVar[str] = "schedulers"
    contract: ClassVar[str] = ('`factory(epochs=, **options)` -> `factor(t)`, t in epochs (float) from the start of '
                               'training, warmup included (zoo multiplies the factor by the warmup ramp)')
    word: ClassVar[str] = "schedule"


@dataclass(frozen=True)
class Trainer(Spec):
    """``factory(device=..., **options)`` returns a :class:`zoo.BaseTrainer`. ``flag`` names the
    command-line switch that picks it (``"amp"``: ``zoo train --amp``)."""

    flag: str = ""

    kind: ClassVar[str] = "trainer"
    hook: ClassVar[str] = "trainers"
    contract: ClassVar[str] = '`factory(**options)` -> a `zoo.BaseTrainer` subclass'
    word: ClassVar[str] = "trainer"


@dataclass(frozen=True)
class Dataset(Spec):
    """``factory(root=..., download=...)`` returns a :class:`zoo.data.ImageData`.

    ``input_size``, ``channels`` and ``num_classes`` describe its images for people and tools reading
    the registry (``zoo list --json``); training always takes them from the loaded data.
    """

    input_size: int = 32
    channels: int = 3
    num_classes: int = 10
    default: bool = False  # the dataset of a run that names none
    kind: ClassVar[str] = "data"
    hook: ClassVar[str] = "datasets"
    contract: ClassVar[str] = ('`factory(root=, download=, **options)` -> `zoo.ImageData` (in memory) or `zoo.ImageFiles` '
                               '(streamed); options come from `--data-set`')
    word: ClassVar[str] = "dataset"


@dataclass(frozen=True)
class Logger(Spec):
    """``factory(**options)`` returns a reporter (``zoo.SilentReporter`` subclass): its ``start(config,
    info)`` gets ``info["run_dir"]``, then ``epoch_start``, ``step``, ``epoch_end`` and ``finish`` as
    the run goes. A logger that raises is reported once and dropped; the run goes on. ``writes`` names
    the files and folders it makes in the run folder, which a run started over (``overwrite``, or a
    resume before the first checkpoint) removes with zoo's own."""

    writes: tuple[str, ...] = ()
    kind: ClassVar[str] = "logger"
    hook: ClassVar[str] = "loggers"
    contract: ClassVar[str] = ('`factory(**options)` -> a `zoo.SilentReporter` subclass: `start(config, info)` '
                               '(`info["run_dir"]`), `epoch_start`, `step`, `epoch_end(record)`, `finish(summary)`; a '
                               'factory that raises stops the run before it starts, a method that raises is reported once '
                               'and the logger dropped')
    word: ClassVar[str] = "logger"


@dataclass(frozen=True)
class Weights(Spec):
    """Pretrained weights for the model ``arch`` (wrappers allowed), named ``<arch>.<tag>`` as timm
    names them (``resnet50.tv2_in1k``). ``factory(**options)`` returns their description, a dict read
    only when they are used (so listing imports nothing): where the file comes from (``url`` with a
    SHA-256, ``hf_hub_id``, or ``file``) and what it was trained with (see docs/pretrained.md).
    ``default`` marks the weights ``pretrained=True`` picks for ``arch``; ``accuracy`` is the reported
    top-1, in percent, for listings."""

    arch: str = ""
    default: bool = False
    accuracy: float | None = None
    kind: ClassVar[str] = "weights"
    hook: ClassVar[str] = "weights"
    contract: ClassVar[str] = ("`factory(**options)` -> the weights' description, a dict (docs/pretrained.md): where the "
                               'file is (`url`, `hf_hub_id`, `file`), what it was trained with')
    word: ClassVar[str] = "weights"


@dataclass(frozen=True)
class Exporter(Spec):
    """A file format for deployment. ``factory(model, example, path, dynamic_batch=..., metadata=...)``
    writes the model in eval mode, traced with the ``example`` batch, to ``path``, with ``metadata``
    (text) inside the file; ``runner(path)`` loads such a file back as ``(predict, metadata)``, where
    ``predict(x) -> logits`` takes and returns CPU tensors: zoo verifies every export with it."""

    suffix: str = ""
    runner: Factory = ""
    kind: ClassVar[str] = "exporter"
    hook: ClassVar[str] = "exporters"
    contract: ClassVar[str] = ('`factory(model, example, path, dynamic_batch=, metadata=)` writes a deployment file with '
                               '`metadata`, a table of text (`dict[str, str]`), inside; `Exporter.runner(path)` -> '
                               '`(predict, metadata)` reads it back, on the CPU; `Exporter.suffix` names its files. zoo '
                               'verifies every export with the runner')
    word: ClassVar[str] = "exporter"


# The one table of kinds: the hooks, the registry, the CLI's --kind and zoo.testing all read it, so a
# new kind is a new Spec class added here.
KINDS: dict[str, type[Spec]] = {
    cls.kind: cls for cls in (Architecture, Wrapper, Augmentation, Optimizer, Scheduler, Trainer, Dataset, Logger, Weights, Exporter)
}
