"""Weights files are untrusted input: their metadata builds a model only from checked options, and
nothing a file says is fetched, read, written or run. Every refusal is one line and exit code 2."""
from __future__ import annotations

import json
import re

import pytest

import zoo
from zoo.base.errors import UserError

from conftest import rewrite_metadata, run_zoo

DATA_FIELDS = dict(classes=[f"c{i}" for i in range(10)], num_classes=10, in_chans=3, input_size=32,
                   mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], dataset="cifar10",
                   trainer={"name": "fp32", "options": {}})


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A real weights file of a small ResNet, as zoo train writes one."""
    path = tmp_path_factory.mktemp("weights") / "good.safetensors"
    model = zoo.create_model("resnet", num_classes=10, in_chans=3, input_size=32, layers=[1, 1, 1], base_channels=4)
    zoo.save_weights(model, path, **DATA_FIELDS)
    return path


def timm_attack(url: str, cache: str) -> dict:
    return {"model": "timm/resnet18", "options": {"pretrained": True, "cache_dir": cache,
                                                   "pretrained_cfg_overlay": {"url": url + "x.pth", "hf_hub_id": ""}},
            **DATA_FIELDS}


@pytest.mark.parametrize("options", [
    {"pretrained": True},
    {"checkpoint_path": "{served}/x.pth"},
    {"pretrained_cfg_overlay": {"file": "{served}/x.pth"}},
    {"cache_dir": "{tmp}/cache"},
])
def test_metadata_that_would_fetch_or_read_a_file_is_refused_and_fetches_nothing(good, server, tmp_path, options):
    (server.folder / "x.pth").write_bytes(b"not weights")
    attack = timm_attack(server.url, str(tmp_path / "cache"))
    attack["options"] = json.loads(json.dumps(options).replace("{served}", str(server.folder))
                                   .replace("{tmp}", str(tmp_path)))
    crafted = rewrite_metadata(good, tmp_path / "crafted.safetensors", lambda d: attack)
    commands = [["eval", str(crafted), "--data-dir", str(tmp_path / "data")]]
    if "pretrained" in options:  # every command reads weights through load_model; one proves it for predict
        commands.append(["predict", str(crafted), str(tmp_path / "img.png")])
    for command in commands:
        result = run_zoo(*command, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "may not set" in result.stderr, result.stderr
    with pytest.raises(UserError, match="which a file may not set"):
        zoo.load_model(crafted)
    assert server.requests == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.safetensors", "served"]


def test_the_full_timm_attack_writes_nothing_anywhere(good, server, tmp_path):
    crafted = rewrite_metadata(good, tmp_path / "crafted.safetensors",
                               lambda d: timm_attack(server.url, str(tmp_path / "site-packages")))
    result = run_zoo("eval", str(crafted), cwd=tmp_path, env={"HOME": str(tmp_path / "home")})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert server.requests == [] and not (tmp_path / "site-packages").exists() and not (tmp_path / "home").exists()


BAD_METADATA = [
    ("not a table", lambda d: [1, 2], "is not a table"),
    ("no model", lambda d: {k: v for k, v in d.items() if k != "model"}, "'model' must be a model name"),
    ("model not text", lambda d: {**d, "model": 7}, "'model' must be a model name"),
    ("options not a table", lambda d: {**d, "options": "width=1"}, "'options' must be a table"),
    ("an undeclared option", lambda d: d["options"].update(hack=1), "option 'hack' of architecture 'resnet'"),
    ("an attention slot", lambda d: d["options"].update(attn_layer="os:system"), "option 'attn_layer'"),
    ("an option the name decides", lambda d: d.update(model="resnet20", options={"block": "bottleneck"}),
     "option 'block'"),
    ("a wrong type", lambda d: d["options"].update(width="wide"), "option width .* must be a number"),
    ("a nested value", lambda d: d["options"].update(layers=[[3], [3]]), "option layers .* flat list"),
    ("a huge number", lambda d: d["options"].update(width=1e300), "finite number"),
    ("a huge depth", lambda d: d["options"].update(layers=[100000]), "at most 8 stages and 2000 blocks"),
    ("many stages", lambda d: d["options"].update(layers=[1] * 5000), "list longer than 1024"),
    ("too wide", lambda d: d["options"].update(width=10000.0), "more than 16384 channels"),
    ("classes of another length", lambda d: d.update(num_classes=3), "'num_classes' must be the number of classes"),
    ("classes not names", lambda d: d.update(classes=[1, 2]), "'classes' must be a list of class names"),
    ("a zero std", lambda d: d.update(std=[0, 0, 0]), "'std' must be one number per channel, each positive"),
    ("a std per other channels", lambda d: d.update(std=[0.2]), "'std' must be one number per channel"),
    ("a huge padded_from", lambda d: d.update(padded_from=200000), "'padded_from' must be a whole number in 1..32"),
    ("a huge input size", lambda d: d.update(input_size=10**9), "'input_size' must be a whole number"),
    ("in_chans not a number", lambda d: d.update(in_chans="3"), "'in_chans' must be a whole number"),
    ("a trainer that is no table", lambda d: d.update(trainer="fp32"), "'trainer' must be a table"),
    ("a plugin that is not installed",
     lambda d: d.update(model="cbam-resnet20", wrappers=["cbam_plugin:cbam"]),
     "made with plugin 'cbam_plugin', which is not installed"),
]


@pytest.mark.parametrize("change, message", [c[1:] for c in BAD_METADATA], ids=[c[0] for c in BAD_METADATA])
def test_metadata_of_the_wrong_shape_is_one_clear_error(good, tmp_path, change, message):
    crafted = rewrite_metadata(good, tmp_path / "crafted.safetensors", change)
    with pytest.raises(UserError, match=message):
        zoo.load_model(crafted)


@pytest.mark.parametrize("raw, message", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"model": "resnet20", "options": {"width": Infinity}}', "Infinity is not a number"),
    ('{"model": "resnet20", "options": {"width": NaN}}', "NaN is not a number"),
    ("not json", "is not valid JSON"),
])
def test_metadata_that_is_not_plain_json_is_refused_by_the_cli(good, tmp_path, raw, message):
    crafted = rewrite_metadata(good, tmp_path / "crafted.safetensors", raw=raw)
    result = run_zoo("eval", str(crafted), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert re.search(message, result.stderr), result.stderr


def test_tensors_that_do_not_fit_are_refused_before_the_model_is_built(good, tmp_path):
    crafted = rewrite_metadata(good, tmp_path / "crafted.safetensors", lambda d: d["options"].update(width=16.0))
    with pytest.raises(UserError, match=r"conv1.weight is \[4, 3, 3, 3\] in the file, \[64, 3, 3, 3\] in the model"):
        zoo.load_model(crafted)


def test_a_fifo_is_refused_not_read(tmp_path):
    import os

    fifo = tmp_path / "w.safetensors"
    os.mkfifo(fifo)
    result = run_zoo("eval", str(fifo), cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "is not a regular file" in result.stderr


def test_good_weights_still_load_and_record_their_plugins(good):
    model = zoo.load_model(good)
    assert model.zoo_meta["plugins"] == {"resnet": zoo.__version__}


def test_zoo_info_describes_a_weights_file_from_its_checked_metadata(good, tmp_path):
    result = run_zoo("info", str(good), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "resnet" and report["classes"][:2] == ["c0", "c1"] and report["input"] == [3, 32, 32]
    text = run_zoo("info", str(good)).stdout
    assert "resnet  (resnet:resnet)" in text and "10 classes (c0, c1, c2, c3, c4, ...)" in text
    trained = rewrite_metadata(good, tmp_path / "trained.safetensors",
                               lambda d: d.update(metrics={"test_accuracy": 0.5, "test_loss": 1.25, "epoch": 1}))
    assert "accuracy       50.00% after 1 epoch (test loss 1.2500)" in run_zoo("info", str(trained)).stdout
    crafted = rewrite_metadata(good, tmp_path / "crafted.safetensors",
                               lambda d: d.update(metrics={"test_accuracy": "99%"}, provenance={"versions": 3}))
    bad = run_zoo("info", str(crafted))
    assert bad.returncode == 2 and "'metrics' must be a table of numbers" in bad.stderr
