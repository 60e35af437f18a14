"""zoo-eca's own tests, written as any plugin author would, with zoo.testing."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

import zoo
from zoo.testing import assert_conforms, fresh_registry


def registry():
    return fresh_registry({"eca": "zoo_eca"}, installed=("resnet", "vgg"))


def test_every_item_conforms():
    checks = assert_conforms(registry(), "eca")
    assert {(c.kind, c.name) for c in checks} == {("wrapper", "eca"), ("arch", "lenet5"), ("aug", "noise")}


def test_eca_follows_the_paper():
    from zoo_eca.blocks import EfficientChannelAttention, adaptive_kernel_size

    assert [adaptive_kernel_size(c) for c in (64, 128, 256, 512, 2048)] == [3, 5, 5, 5, 7]
    model = zoo.create_model("eca-resnet50", registry=registry())
    blocks = [m for m in model.modules() if isinstance(m, EfficientChannelAttention)]
    assert len(blocks) == 16
    # ECA adds only k weights per block (k = 3, 5, 5, 7 in the four stages): 80 parameters in all.
    plain = zoo.create_model("resnet50", registry=registry())
    added = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    assert added == sum(b.conv.weight.numel() for b in blocks) and added < 100


def test_lenet5_has_its_classic_parameter_count():
    model = zoo.create_model("lenet5", registry=registry(), num_classes=10, in_chans=1)
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def _zoo(*args):
    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_installed_plugin_shows_in_the_cli_and_trains(tmp_path):
    plugins = {p["name"]: p for p in json.loads(_zoo("plugins", "--json").stdout)}
    assert plugins["eca"]["status"] == "ok" and plugins["eca"]["distribution"] == "zoo-eca"
    assert {"eca", "lenet5", "noise"} <= {r["name"] for r in json.loads(_zoo("list", "--json").stdout)}
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "train", "eca-resnet18", "--data", "fashion-mnist-sample", "--set", "width=0.125",
         "--epochs", "1", "--limit-train", "256", "--limit-test", "128", "--batch-size", "64", "--aug", "noise=0.05",
         "--aug", "hflip", "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    weights = json.loads(result.stdout)["weights"]
    reloaded = zoo.load_model(tmp_path / weights)
    assert reloaded.zoo_config["wrappers"] == ["eca:eca"]
