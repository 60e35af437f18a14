"""Each plugin kind's contract, at the seams where one side used to guess the other's shape: blocks
keep their own layers in an architecture's attention slot; plugin code that raises, at build time or
while training, is one line and exit 2, leaving no half-written run; a run records its loggers."""
from __future__ import annotations

import json
import os

import pytest
import torch

import zoo
from conftest import TINY_VGG, make_plugin_dist, run_zoo

BIAS_FREE = '''
    import torch
    from torch import nn
    from zoo import Augmentation, BaseTrainer, Exporter, Logger, Scheduler, Trainer, Wrapper, add_attention, hookimpl


    class Gate(nn.Module):
        """Attention whose convolution has no bias, initialised its own way."""

        def __init__(self, channels):
            super().__init__()
            self.conv = nn.Conv2d(channels, channels, 1, bias=False)
            nn.init.constant_(self.conv.weight, 0.125)

        def forward(self, x):
            return x * torch.sigmoid(self.conv(x.mean((2, 3), keepdim=True)))


    def gated(build, arch, placement=None):
        return add_attention(build, arch, Gate, Gate, "gate", placement)


    class Failing(Gate):
        """A block that works when probed (a batch of 1 or 2) and raises in a training step."""

        def forward(self, x):
            if self.training and x.shape[0] > 2:
                raise RuntimeError("the block's own bug")
            return super().forward(x)


    def failing_block(build, arch, placement=None):
        return add_attention(build, arch, Failing, Failing, "failing", placement)


    class FailingTrainer(BaseTrainer):
        def backward_step(self, loss, optimizer):
            raise RuntimeError("the trainer's own bug")


    def failing_schedule(epochs):
        return lambda t: 1.0 / (t - t)


    def broken(build, arch):
        raise RuntimeError("the wrapper's own bug")


    def failing_aug():
        calls = []

        def aug(x, y):
            calls.append(1)
            if len(calls) > 1:
                raise RuntimeError("the augmentation's own bug")
            return x, y
        return aug


    def failing_logger():
        raise RuntimeError("the logger's own bug")


    def failing_export(model, example, path, dynamic_batch=False, metadata=None):
        raise RuntimeError("the exporter's own bug")


    @hookimpl
    def wrappers():
        return [Wrapper("gate", gated, "a bias-free gate"), Wrapper("broken", broken, "raises"),
                Wrapper("failing", failing_block, "a block that raises while training")]


    @hookimpl
    def trainers():
        return [Trainer("failing", FailingTrainer, "raises in its backward step")]


    @hookimpl
    def schedulers():
        return [Scheduler("failing", failing_schedule, "divides by zero")]


    @hookimpl
    def augmentations():
        return [Augmentation("flaky", failing_aug, "raises on its second batch")]


    @hookimpl
    def loggers():
        return [Logger("flaky", failing_logger, "raises when built")]


    @hookimpl
    def exporters():
        return [Exporter("flaky", failing_export, "raises", suffix=".bin", runner=failing_export)]
'''


@pytest.fixture
def seams(plugin_dir):
    make_plugin_dist(plugin_dir, "zoo-seams", "seams", BIAS_FREE)
    return {"PYTHONPATH": os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("arch", ["vgg16_bn", "vgg11", "resnet20"])
def test_a_bias_free_attention_block_composes_and_keeps_its_own_init(seams, arch):
    registry = zoo.Registry.discover()
    model = zoo.create_model(f"gate-{arch}", registry=registry, num_classes=10, input_size=32)
    gates = [m for m in model.modules() if type(m).__name__ == "Gate"]
    assert gates and all(torch.all(g.conv.weight == 0.125) for g in gates)  # the architecture did not touch them
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_a_wrapper_that_raises_is_one_line_naming_it(seams, tmp_path):
    result = run_zoo("info", "broken-vgg11", "--input-size", "32", env=seams, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("zoo: error: plugin 'seams', wrapper 'broken': its factory raised "
                                     "(RuntimeError: the wrapper's own bug)")


def _train(env, tmp_path, *flags, model="vgg_bn"):
    return run_zoo("train", model, "--data", "fashion-mnist-sample", "--limit-train", "64", "--limit-test", "32",
                   "--batch-size", "16", "--epochs", "1", "--set", f"layout={TINY_VGG['layout']}",
                   "--run-dir", "runs/r", "--out", "w.safetensors", *flags, env=env, cwd=tmp_path)


def test_plugin_code_that_raises_while_training_leaves_no_half_written_run(seams, tmp_path):
    result = _train(seams, tmp_path, "--aug", "flaky")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("zoo: error: plugin 'seams', augmentation 'flaky': raised "
                                                      "while training (RuntimeError: the augmentation's own bug)")
    assert not (tmp_path / "runs" / "r").exists() and not (tmp_path / "w.safetensors").exists()
    result = _train(seams, tmp_path, "--log", "flaky")
    assert result.returncode == 2 and "logger 'flaky': its factory raised" in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("model, flags, line", [
    ("failing-vgg_bn", (), "wrapper 'failing': raised while training (RuntimeError: the block's own bug)"),
    ("vgg_bn", ("--trainer", "failing"), "trainer 'failing': raised while training (RuntimeError: the trainer's "
                                         "own bug)"),
    ("vgg_bn", ("--sched", "failing"), "schedule 'failing': raised while training (ZeroDivisionError: float "
                                       "division by zero)"),
])
def test_a_block_trainer_or_schedule_that_raises_in_a_step_is_named(seams, tmp_path, model, flags, line):
    result = _train(seams, tmp_path, *flags, model=model)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"zoo: error: plugin 'seams', {line}"
    assert not (tmp_path / "runs" / "r").exists() and not (tmp_path / "w.safetensors").exists()


def test_an_exporter_that_raises_is_one_line(seams, tmp_path):
    model = zoo.create_model("resnet", num_classes=10, layers=[1, 1, 1], base_channels=4)
    weights = zoo.save_weights(model, tmp_path / "out" / "w.safetensors", classes=[str(i) for i in range(10)],
                               num_classes=10, in_chans=3, input_size=32)
    result = run_zoo("export", str(weights), "--format", "flaky", env=seams, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("zoo: error: plugin 'seams', exporter 'flaky': could not export resnet "
                                     "(RuntimeError: the exporter's own bug)")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["w.safetensors"]


def test_a_run_records_its_loggers_and_a_resume_keeps_them(cifar_dir, tmp_path):
    from conftest import tiny_config

    config = tiny_config(epochs=1, data_dir=str(cifar_dir), loggers=["csv"])
    first = zoo.train(config, run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors")
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["loggers"] == ["csv"] and first["epochs"] == 1
    zoo.train(resume=tmp_path / "run", weights=tmp_path / "w.safetensors", epochs=2)
    rows = (tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # the header, and one row per epoch: the resumed run logged to csv too


def test_an_older_config_without_loggers_still_resumes(cifar_dir, tmp_path):
    from conftest import tiny_config

    zoo.train(tiny_config(epochs=1, data_dir=str(cifar_dir)), run_dir=tmp_path / "run",
              weights=tmp_path / "w.safetensors")
    path = tmp_path / "run" / "config.json"
    document = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in document.items() if k not in ("loggers", "logger_options")}))
    assert zoo.train(resume=tmp_path / "run", weights=tmp_path / "w.safetensors", epochs=2)["epochs"] == 2


def test_zoo_eval_resolves_the_weights_into_a_model_once(tmp_path, monkeypatch):
    from zoo.registry.catalog import Registry

    model = zoo.create_model("resnet", num_classes=10, in_chans=1, layers=[1, 1, 1], base_channels=4)
    weights = zoo.save_weights(model, tmp_path / "w.safetensors", classes=[str(i) for i in range(10)],
                               num_classes=10, in_chans=1, input_size=32, mean=[0.5], std=[0.25],
                               dataset="fashion-mnist-sample")
    resolved = []
    real = Registry.resolve_model
    monkeypatch.setattr(Registry, "resolve_model", lambda self, name: resolved.append(name) or real(self, name))
    result = zoo.evaluate_weights(weights)
    assert 0 <= result["accuracy"] <= 1
    assert resolved == ["resnet"], resolved


def test_the_records_a_logger_receives_are_the_documented_ones(cifar_dir, tmp_path):
    import re
    from pathlib import Path

    from conftest import tiny_config

    docs = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    start = docs.index("**A logger's calls:**")
    documented = set(re.findall(r"`(\w+)`", docs[start:docs.index("`finish(summary)`", start)]))
    calls = []

    class Recorder(zoo.SilentReporter):
        def start(self, config, info):
            calls.append(("start", set(info)))

        def epoch_end(self, record):
            calls.append(("epoch_end", set(record)))

    zoo.train(tiny_config(epochs=1, data_dir=str(cifar_dir)), run_dir=tmp_path / "run",
              weights=tmp_path / "w.safetensors", reporter=Recorder())
    (_, info), (_, record) = calls
    described = set(zoo.BaseTrainer(device="cpu").describe())  # the trainer's own, documented as describe()
    assert info - described <= documented, info - described - documented
    assert record <= documented, record - documented
    from zoo.data.images import ImageData

    section = docs[docs.index("**`ImageData`**"):docs.index("**A logger's calls:**")]
    assert {f for f in ImageData.__dataclass_fields__} <= set(re.findall(r"`(\w+)`", section))


def test_the_weights_metadata_is_one_record_read_as_fields_and_as_the_table_written(tmp_path):
    from safetensors import safe_open

    from zoo.io.metadata import WeightsMetadata

    model = zoo.create_model("resnet", num_classes=2, in_chans=1, layers=[1, 1, 1], base_channels=4)
    path = zoo.save_weights(model, tmp_path / "w.safetensors", classes=["a", "b"], input_size=32, note="mine")
    meta = zoo.load_model(path).zoo_meta
    assert isinstance(meta, WeightsMetadata)
    assert meta.classes == meta["classes"] == ["a", "b"] and meta.crop_pct is None and "crop_pct" not in meta
    assert meta["note"] == "mine" and meta.extra == {"note": "mine"}
    with safe_open(path, "pt") as f:  # what is written is what is read, field for field and in order
        assert json.loads(f.metadata()["zoo"]) == meta.document() == dict(meta)
    with pytest.raises(zoo.UserError, match="metadata field 'classes' must be a list of class names"):
        zoo.save_weights(model, tmp_path / "bad.safetensors", classes="ab")  # checked on writing too
    assert not (tmp_path / "bad.safetensors").exists()


@pytest.mark.parametrize("description, wrong", [
    ([1, 2], "did not return a description"),
    ({"url": "https://x/w-0123456.pth", "mean": "0.5"}, "description field 'mean'.*must be list\\[float\\] | None"),
    ({"url": "https://x/w-0123456.pth", "num_classes": True}, "description field 'num_classes'"),
    ({"url": "https://x/w-0123456.pth", "name": "other"}, "description field 'name'.*unknown"),
    ({"mean": [0.5]}, "names no file"),
])
def test_a_weights_description_is_checked_once_into_its_record(description, wrong):
    from zoo.io.pretrained import WeightsDescription

    spec = zoo.Weights("lenet.mine", "nowhere:described", "mine", arch="lenet")
    with pytest.raises(zoo.PluginError, match=wrong):
        WeightsDescription.checked(spec, description)
    good = WeightsDescription.checked(spec, {"url": "https://x/w-0123456.pth", "accuracy": 99, "mean": [0.5]})
    assert (good.name, good.arch, good.accuracy, good.std) == ("lenet.mine", "lenet", 99, None)
    assert good.given() == {"name": "lenet.mine", "arch": "lenet", "url": "https://x/w-0123456.pth",
                            "mean": [0.5], "accuracy": 99}


def test_the_defaults_of_a_run_are_decided_once_and_a_resume_too(cifar_dir, tmp_path, monkeypatch):
    import zoo.training.config
    import zoo.training.loop
    from conftest import tiny_config

    calls = []
    real = zoo.training.config.with_defaults
    for module in (zoo.training.config, zoo.training.loop):
        monkeypatch.setattr(module, "with_defaults", lambda config, registry: calls.append(1) or real(config, registry))
    zoo.train(tiny_config(epochs=1, data_dir=str(cifar_dir)), run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors")
    assert len(calls) == 1
    zoo.train(resume=tmp_path / "run", weights=tmp_path / "w.safetensors", epochs=2)
    assert len(calls) == 2


def test_what_a_model_starts_from_is_read_once_into_its_type(tmp_path):
    from zoo.io.pretrained import RegisteredWeights, WeightsFile, starting_weights

    assert starting_weights(None) is None and starting_weights(False) is None
    assert starting_weights(True) == starting_weights("default") == RegisteredWeights()
    assert starting_weights("tv2_in1k") == RegisteredWeights("tv2_in1k")
    assert starting_weights("runs/a/w.safetensors") == WeightsFile(tmp_path.__class__("runs/a/w.safetensors"))
    assert starting_weights(tmp_path / "w") == WeightsFile(tmp_path / "w")
    with pytest.raises(zoo.UserError, match=r"pretrained 'w.pth' is a .pth file: zoo starts from zoo weights files"):
        zoo.create_model("resnet18", pretrained="w.pth")
    with pytest.raises(zoo.UserError, match="pretrained must be true, a weights tag or a zoo weights file, got 3"):
        zoo.create_model("resnet18", pretrained=3)
