"""For plugin authors' tests: a fresh registry with chosen plugins, and a conformance check that runs
every item a plugin provides.

    from zoo.testing import assert_conforms, fresh_registry

    def test_my_plugin_conforms():
        registry = fresh_registry({"eca": "zoo_eca"}, installed=("resnet", "vgg"))
        assert_conforms(registry, "eca")
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping

from .registry.hooks import ENTRY_POINT_GROUP, hookimpl
from .registry.catalog import PluginInfo, Registry
from .registry.specs import Architecture


@hookimpl(specname="architectures")
def _conformance_architectures():
    return [Architecture("convnet", "zoo.testing:plain_convnet", "a plain CNN from outside the built-in families",
                         input_size=32)]


class _ConformancePlugin:
    """Supplies a model no built-in family made, so wrappers are checked on a stranger's model too."""

    architectures = staticmethod(_conformance_architectures)


def plain_convnet(num_classes: int = 10, in_chans: int = 3, input_size: int = 32):
    from torch import nn

    return nn.Sequential(nn.Conv2d(in_chans, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, num_classes))


def fresh_registry(plugins: Mapping[str, ModuleType | object | str] | None = None, installed: Iterable[str] = (),
                   strict: bool = True) -> Registry:
    """A registry of ``plugins`` (name -> module, object or module name) plus the ``installed``
    plugins of these entry-point names, and the conformance plugin (``conformance:convnet``).
    Strict by default: a broken plugin raises :class:`zoo.PluginError`."""
    registry = Registry(strict=strict)
    wanted = set(installed)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in wanted:
            dist = ep.dist
            registry.load_plugin(PluginInfo(ep.name, ep.value, dist.name if dist else "", dist.version if dist else ""),
                                 ep.load)
    for name, plugin in {**(plugins or {}), "conformance": _ConformancePlugin()}.items():
        load = (lambda p=plugin: importlib.import_module(p)) if isinstance(plugin, str) else (lambda p=plugin: p)
        registry.load_plugin(PluginInfo(name, plugin if isinstance(plugin, str) else repr(plugin)), load)
    registry.collect()
    return registry


@dataclass
class Check:
    kind: str
    name: str
    status: str  # ok | failed | skipped
    detail: str = ""


def _forward_backward(model, input_size: int, classes: int = 3, in_chans: int = 3) -> None:
    import torch

    model.train()
    output = model(torch.randn(2, in_chans, input_size, input_size))
    assert tuple(output.shape) == (2, classes), f"output shape {tuple(output.shape)}, expected (2, {classes})"
    output.float().logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), "missing or non-finite gradients"


def _check_arch(registry: Registry, spec, input_size: int | None) -> str:
    from .io.create import create_model

    size = input_size or spec.input_size
    model = create_model(spec.qualified_name, registry=registry, num_classes=3, in_chans=3, input_size=size)
    _forward_backward(model, size)
    for site in spec.attention_sites:
        _check_attention_slot(spec, site, size)
    if not hasattr(model, "forward_features"):
        return f"forward and backward at 3x{size}x{size}"
    _check_model_api(model, size)
    return f"forward and backward at 3x{size}x{size}; timm's model API"


def _check_attention_slot(spec, site: str, size: int) -> None:
    """Blocks placed in the slot keep their own layers and init, whatever those are (a bias-free conv)."""
    import torch

    placed: list = []

    def block(channels: int):
        placed.append(torch.nn.Conv2d(channels, channels, 1, bias=False))
        torch.nn.init.constant_(placed[-1].weight, 0.125)
        return placed[-1]

    spec.load()(num_classes=3, in_chans=3, input_size=size, attn_layer=block, attn_site=site)
    assert placed, f"attention site {site!r} placed no block"
    assert all(bool(torch.all(conv.weight == 0.125)) for conv in placed), \
        f"attention site {site!r}: the architecture changed the init of blocks it did not make"


MODEL_API = ("forward_features", "forward_head", "get_classifier", "reset_classifier", "num_features",
             "set_grad_checkpointing")


def _check_model_api(model, size: int) -> None:
    """What timm models expose, for an architecture that declares it (has ``forward_features``)."""
    import torch

    missing = [name for name in MODEL_API if not hasattr(model, name)]
    assert not missing, f"forward_features without {', '.join(missing)}"
    x = torch.randn(2, 3, size, size)
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert torch.allclose(model.forward_head(features), model(x), atol=1e-5), "forward_head(forward_features) != forward"
        width = getattr(model, "head_hidden_size", None) or model.num_features  # timm's, where a head has layers
        assert tuple(model.forward_head(features, pre_logits=True).shape) == (2, width), \
            "pre_logits is not (batch, head_hidden_size or num_features)"
        logits = model(x)
        assert model.get_classifier()(model.forward_head(features, pre_logits=True)).shape == logits.shape
    model.set_grad_checkpointing(True)
    _forward_backward(model, size, classes=logits.shape[1])
    model.set_grad_checkpointing(False)
    model.reset_classifier(5)
    with torch.no_grad():
        assert tuple(model(x).shape) == (2, 5), "reset_classifier(5) does not give 5 outputs"


def _check_wrapper(registry: Registry, spec, input_size: int | None) -> str:
    from .io.create import create_model

    targets = [*_smallest_per_family(registry), "conformance:convnet"]
    for target in targets:
        model = create_model(f"{spec.qualified_name}-{target}", registry=registry, num_classes=3, input_size=32)
        _forward_backward(model, 32)
    return "applied to " + ", ".join(targets)


def _smallest_per_family(registry: Registry) -> list[str]:
    """The architecture with the fewest parameters (at 32 px) of each family that offers attention
    slots, whatever families are installed; counted on the meta device, so nothing is allocated."""
    import torch

    from .io.create import create_model

    smallest: dict[str, tuple[int, str]] = {}
    for arch in registry.items("arch"):
        if not arch.attention_sites:
            continue
        with torch.device("meta"):
            size = sum(p.numel() for p in create_model(arch.qualified_name, registry=registry, num_classes=3,
                                                       input_size=32).parameters())
        family = arch.family or arch.qualified_name
        smallest[family] = min(smallest.get(family, (size, arch.qualified_name)), (size, arch.qualified_name))
    return [name for _, name in sorted(smallest.values(), key=lambda item: item[1])]


def _check_aug(registry: Registry, spec, input_size: int | None) -> str:
    import torch
    import torch.nn.functional as F

    aug = spec.load()()
    x = torch.rand(8, 3, 32, 32)
    labels = torch.arange(8) % 4
    y = F.one_hot(labels, 4).float() if spec.mixes_labels else labels
    out, out_y = aug(x.clone(), y.clone())
    assert out.shape == x.shape and out.dtype == x.dtype, f"changed the batch to {out.dtype} {tuple(out.shape)}"
    if spec.mixes_labels:
        assert out_y.shape == y.shape and torch.allclose(out_y.sum(1), torch.ones(8)), "soft labels must sum to 1"
    else:
        assert torch.equal(out_y, labels), "labels changed or reordered"
    return "keeps shape, dtype and labels"


def _check_opt(registry: Registry, spec, input_size: int | None) -> str:
    import torch

    model = torch.nn.Linear(4, 2)
    before = model.weight.detach().clone()
    optimizer = spec.load()(model.parameters(), lr=0.01, weight_decay=0.0)
    for _ in range(2):  # some (ADOPT) only gather statistics on their first step
        optimizer.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        optimizer.step()
    assert not torch.equal(before, model.weight), "two steps did not change the weights"
    return "steps"


def _check_sched(registry: Registry, spec, input_size: int | None) -> str:
    factor = spec.load()(epochs=10)
    values = [factor(t / 4) for t in range(41)]
    assert all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in values), "factors must be >= 0"
    return "finite factors over 10 epochs"


def _check_trainer(registry: Registry, spec, input_size: int | None) -> str:
    import torch

    trainer = spec.load()(device="cpu")
    model = trainer.prepare(plain_convnet(3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    with trainer.autocast():
        loss = torch.nn.functional.cross_entropy(model(trainer.prepare_input(torch.randn(4, 3, 16, 16))).float(),
                                                 torch.tensor([0, 1, 2, 0]))
    trainer.backward_step(loss, optimizer)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "a step changed nothing"
    return f"one step ({trainer.describe()['precision']})"


def _check_data(registry: Registry, spec, input_size: int | None) -> str:
    from .base.errors import UserError

    with tempfile.TemporaryDirectory() as root:
        try:
            data = spec.load()(root=Path(root), download=False)
        except UserError as exc:
            raise _Skip(f"no data here: {exc}") from exc
    assert data.num_classes > 0 and len(data.train_images) > 0, "empty dataset"
    return f"{len(data.train_images)} + {len(data.test_images)} images"


def _check_weights(registry: Registry, spec, input_size: int | None) -> str:
    """The description is complete and the model exists; the file fits the model when cached here
    (a conformance check never downloads)."""
    from .base.errors import UserError
    from .io.create import create_model
    from .io.pretrained import describe, fit_state_dict, read_state_dict, weights_file

    description = describe(spec)
    for key in ("mean", "std"):
        assert len(getattr(description, key) or [0]) in (1, 3), f"{key} must have one value per channel"
    model = create_model(spec.arch, registry=registry, num_classes=description.num_classes)
    try:
        path = weights_file(description, download=False)
    except UserError as exc:
        if "not in the cache" not in str(exc):
            raise
        return "described; the file is not cached here"
    fit_state_dict(model, read_state_dict(path, spec.name), spec.name, description.classifier or "")
    return "described; the cached file fits the model"


def _check_exporter(registry: Registry, spec, input_size: int | None) -> str:
    """The exporter writes a plain CNN that its runner reads back, answering as PyTorch, metadata kept."""
    import torch

    from .base.errors import UserError

    model = plain_convnet(3).eval()
    example, probe = torch.randn(2, 3, 16, 16), torch.randn(3, 3, 16, 16)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"model{spec.suffix}"
        try:
            spec.load()(model, example, path, dynamic_batch=True, metadata={"zoo": "{}"})
        except UserError as exc:  # an optional dependency missing here
            raise _Skip(str(exc)) from exc
        predict, metadata = spec.resolve(spec.runner, "runner")(path)
        with torch.no_grad():
            assert torch.allclose(predict(probe), model(probe), atol=1e-4), "the exported model answers differently"
    assert metadata == {"zoo": "{}"}, "the metadata did not survive the export"
    return "a plain CNN exported, read back, equal outputs at another batch size"


REPORTER_METHODS = ("start", "epoch_start", "step", "epoch_end", "finish")


def _check_logger(registry: Registry, spec, input_size: int | None) -> str:
    """The logger takes a two-epoch run's calls in order, and writes only what ``writes`` declares in
    the run folder."""
    from .base.errors import UserError
    from .training.config import RunConfig

    try:
        logger = spec.load()()
    except UserError as exc:  # an optional dependency missing here
        raise _Skip(str(exc)) from exc
    missing = [name for name in REPORTER_METHODS if not callable(getattr(logger, name, None))]
    assert not missing, f"a logger without {', '.join(missing)}"
    with tempfile.TemporaryDirectory() as folder:
        info = {"run_dir": folder, "weights": str(Path(folder) / "w.safetensors"), "parameters": 1,
                "train_images": 8, "test_images": 4, "processes": 1, "steps_per_epoch": 2, "batch_size": 4}
        logger.start(RunConfig(epochs=2), info)
        for epoch in range(2):
            logger.epoch_start(epoch, 2)
            logger.step(2, 1.0, 0.5, 100.0)
            logger.epoch_end({"epoch": epoch + 1, "train_loss": 1.0, "train_accuracy": 0.5, "test_loss": 1.0,
                              "test_accuracy": 0.5, "lr": 0.1, "seconds": 1.0, "images_per_s": 8.0,
                              "eval_seconds": 0.1})
        logger.finish({"test_accuracy": 0.5, "test_loss": 1.0, "epochs": 2, "weights": info["weights"],
                       "run_dir": folder, "seconds": 2.0})
        undeclared = sorted({p.name for p in Path(folder).iterdir()} - set(spec.writes))
    assert not undeclared, f"wrote {', '.join(undeclared)} in the run folder, which `writes` does not declare"
    return "a two-epoch run's calls; wrote only what it declares"


class _Skip(Exception):
    pass


CHECKS: dict[str, Callable[[Registry, Any, int | None], str]] = {
    "arch": _check_arch, "wrapper": _check_wrapper, "aug": _check_aug, "opt": _check_opt, "sched": _check_sched,
    "trainer": _check_trainer, "data": _check_data, "weights": _check_weights, "exporter": _check_exporter,
    "logger": _check_logger,
}


def check_plugin(registry: Registry, plugin: str, input_size: int | None = None,
                 names: Iterable[str] | None = None) -> list[Check]:
    """Run every item ``plugin`` provides, or only those in ``names`` (for large catalogues);
    ``input_size`` overrides architectures' declared input size."""
    checks = []
    chosen = None if names is None else set(names)
    for kind, check in CHECKS.items():
        specs = [s for s in registry.items(kind) if s.plugin == plugin and (chosen is None or s.name in chosen)]
        for spec in specs:
            try:
                checks.append(Check(kind, spec.name, "ok", check(registry, spec, input_size)))
            except _Skip as skip:
                checks.append(Check(kind, spec.name, "skipped", str(skip)))
            except Exception as exc:  # the point is to report whatever a plugin does wrong
                checks.append(Check(kind, spec.name, "failed", f"{type(exc).__name__}: {exc}"))
    return checks


def assert_conforms(registry: Registry, plugin: str, **options: Any) -> list[Check]:
    """:func:`check_plugin`, raising AssertionError with every failure; returns the checks."""
    checks = check_plugin(registry, plugin, **options)
    assert checks, f"plugin {plugin!r} provides nothing"
    failed = [c for c in checks if c.status == "failed"]
    assert not failed, "\n".join(f"{c.kind} {c.name}: {c.detail}" for c in failed)
    return checks
