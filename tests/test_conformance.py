"""The built-in plugins pass the same conformance check as a third party's, and the check catches
a broken plugin."""
from __future__ import annotations

from pathlib import Path

import pytest

import zoo
from zoo import Architecture, Augmentation, hookimpl
from zoo.testing import assert_conforms, check_plugin, fresh_registry

BUILTINS = ("vgg", "resnet", "se", "timm", "datasets", "augment", "optim", "trainers", "export", "loggers")
TIMM_SAMPLE = ("timm/resnet18", "timm/mobilenetv3_small_100", "timm/lamb", "timm/adamp")


@pytest.fixture(scope="module")
def registry():
    return fresh_registry(installed=BUILTINS)


@pytest.mark.parametrize("plugin", ["se", "augment", "optim", "trainers", "datasets", "export"])
def test_builtin_plugins_conform(registry, plugin):
    checks = assert_conforms(registry, plugin)
    if plugin == "datasets":  # the embedded sample needs no files, so it is really loaded
        assert {c.name: c.status for c in checks}["fashion-mnist-sample"] == "ok"


def test_builtin_loggers_conform_and_the_check_catches_an_undeclared_file(registry, tmp_path):
    checks = assert_conforms(registry, "loggers", names=("csv", "tensorboard"))
    assert {c.name for c in checks} == {"csv", "tensorboard"}

    class Litter(zoo.SilentReporter):
        def start(self, config, info):
            (Path(info["run_dir"]) / "stray.txt").write_text("x")

    plugin = type("Plugin", (), {"loggers": staticmethod(zoo.hookimpl(lambda: [zoo.Logger("litter", Litter)]))})()
    (check,) = check_plugin(fresh_registry({"litter": plugin}), "litter")
    assert check.status == "failed" and "stray.txt" in check.detail


@pytest.mark.parametrize("plugin", ["vgg", "resnet"])
def test_builtin_architectures_conform_on_small_inputs(registry, plugin):
    assert len(assert_conforms(registry, plugin, input_size=32)) > 10


# Every name conforms on small inputs (above); at the declared size (224 px for ImageNet shapes), one
# name for each path through the code: LRN, 1x1 convs with batch norm, a custom layout; basic and
# bottleneck blocks, the CIFAR stem. (Each network's layout is checked by its parameter count.)
DECLARED_SIZE_SAMPLE = {"vgg": ["vgg11_lrn", "vgg16c_bn", "vgg"], "resnet": ["resnet18", "resnet50", "resnet110"]}


@pytest.mark.slow
@pytest.mark.parametrize("plugin", ["vgg", "resnet"])
def test_builtin_architectures_conform_at_their_declared_input_size(registry, plugin):
    checks = assert_conforms(registry, plugin, names=DECLARED_SIZE_SAMPLE[plugin])
    assert sorted(c.name for c in checks) == sorted(DECLARED_SIZE_SAMPLE[plugin])


def test_timm_catalogue_conforms_on_a_sample(registry):
    checks = assert_conforms(registry, "timm", names=TIMM_SAMPLE)
    assert len(checks) == 2  # the timm optimizers belong to the optim plugin
    assert_conforms(registry, "optim", names=TIMM_SAMPLE)


class BrokenPlugin:
    """An architecture with the wrong output, one that cannot backpropagate, an augmentation that
    reorders labels."""

    @staticmethod
    def wrong_classes(num_classes=10, in_chans=3, input_size=32):
        from torch import nn

        return nn.Sequential(nn.Conv2d(in_chans, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 7))

    @staticmethod
    def frozen(num_classes=10, in_chans=3, input_size=32):
        from torch import nn

        model = nn.Sequential(nn.Conv2d(in_chans, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

        class Detached(nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = model

            def forward(self, x):
                return self.inner(x).detach().requires_grad_()

        return Detached()

    @staticmethod
    def shuffle(p=1.0):
        import torch

        return lambda x, y: (x, y[torch.randperm(len(y))] if len(y) > 1 else y)

    @hookimpl
    def architectures(self):
        return [Architecture("wrong_classes", BrokenPlugin.wrong_classes), Architecture("frozen", BrokenPlugin.frozen),
                Architecture("fine", "zoo.testing:plain_convnet", input_size=32)]

    @hookimpl
    def augmentations(self):
        return [Augmentation("shuffle", BrokenPlugin.shuffle)]


def test_conformance_catches_a_broken_plugin():
    registry = fresh_registry({"broken": BrokenPlugin()})
    results = {c.name: c for c in check_plugin(registry, "broken")}
    assert results["fine"].status == "ok"
    assert results["wrong_classes"].status == "failed" and "output shape (2, 7), expected (2, 3)" in results[
        "wrong_classes"].detail
    assert results["frozen"].status == "failed" and "gradients" in results["frozen"].detail
    assert results["shuffle"].status == "failed" and "labels" in results["shuffle"].detail
    with pytest.raises(AssertionError, match="wrong_classes"):
        assert_conforms(registry, "broken")


def test_the_documented_public_api_is_zoo_all_and_plugins_use_only_it():
    import re

    from conftest import ROOT

    text = (ROOT / "docs" / "plugins.md").read_text()
    table = text.split("<!-- public-api -->")[1].split("<!-- /public-api -->")[0]
    documented = {name for row in table.splitlines()[2:] for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert documented == set(zoo.__all__)
    assert all(hasattr(zoo, name) for name in zoo.__all__)
    for source in [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]:
        if "tests" in source.parts:
            continue
        imported = re.findall(r"^\s*(?:from|import) (zoo\.\w+)", source.read_text(), re.MULTILINE)
        assert imported == [], f"{source} imports {imported}: plugins import only `zoo`"


def test_docs_state_each_kind_s_contract_from_the_specs():
    from zoo.registry.specs import KINDS

    docs = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    for spec_type in KINDS.values():
        assert f"| `{spec_type.hook}()` | `{spec_type.__name__}` | {spec_type.contract} |" in docs, spec_type.__name__
