"""Caches, image folders, data files, config files, options and the environment are untrusted input:
nothing found there hangs zoo, allocates without bound, or ends in a traceback; each refusal is one
line and exit code 2, and one bad image among good ones is skipped, not fatal."""
from __future__ import annotations

import gzip
import io
import json
import os
import struct
import tarfile
import threading
import time
import zlib

import pytest

import zoo
from zoo import UserError

from conftest import rewrite_metadata, run_zoo

FIELDS = dict(classes=[f"c{i}" for i in range(10)], num_classes=10, in_chans=3, input_size=32, mean=[0.5] * 3,
              std=[0.25] * 3, dataset="cifar10", trainer={"name": "fp32", "options": {}})
HUB_FILE = "resnet18-f37072fd.pth"  # torchvision's resnet18 weights, as torch.hub caches them


def one_line(result, contains: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert contains in result.stderr, result.stderr


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    model = zoo.create_model("resnet", num_classes=10, layers=[1, 1, 1], base_channels=4)
    return zoo.save_weights(model, folder / "good.safetensors", **FIELDS)


# ----------------------------------------------------------------------------- caches and downloads
@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "sparse", "folder"])
def test_whatever_lies_in_the_torch_hub_cache_is_refused_at_once(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / HUB_FILE
    cached.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(cached)
    elif kind == "dev_zero":
        cached.symlink_to("/dev/zero")
    elif kind == "sparse":
        with open(cached, "wb") as f:
            f.truncate(3 << 30)
    else:
        cached.mkdir()
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        zoo.create_model("resnet18", pretrained=True)
    assert time.monotonic() - started < 10 and "\n" not in str(error.value)
    assert "delete it to download" in str(error.value)


def test_a_download_without_a_network_leaves_nothing_in_torch_home(tmp_path):
    home = tmp_path / "torch"  # not there yet: zoo makes the cache folders only for a file it keeps
    env = {"TORCH_HOME": str(home), "ZOO_OFFLINE": "", "HF_HUB_OFFLINE": "", "https_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}
    result = run_zoo("train", "resnet18", "--pretrained", "--data", "fashion-mnist-sample", "--epochs", "1",
                     "--limit-train", "20", "--batch-size", "10", cwd=tmp_path, env=env)
    one_line(result, "cannot download")
    assert not home.exists()


# ----------------------------------------------------------------------------- image folders
def png_with_chunk(kind: bytes, payload: bytes) -> bytes:
    """A valid 2x2 PNG with one more chunk before its image data (a zTXt or iCCP bomb)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), (10, 200, 10)).save(buffer, "PNG")
    data = buffer.getvalue()
    chunk = struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    at = data.index(b"IDAT") - 4
    return data[:at] + chunk + data[at:]


def test_a_folder_of_good_and_hostile_images_predicts_the_good_ones(good, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 40), (200, 30, 30)).save(folder / "a_good.png")
    Image.new("RGB", (40, 40), (30, 30, 200)).save(folder / "sub" / "z_good.jpg")
    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    (folder / "ztxt.png").write_bytes(png_with_chunk(b"zTXt", b"comment\0\0" + bomb))
    (folder / "iccp.png").write_bytes(png_with_chunk(b"iCCP", b"profile\0\0" + bomb))
    big = io.BytesIO()
    Image.new("L", (8000, 8000)).save(big, "JPEG", quality=1)  # 64 megapixels in a small file
    (folder / "bomb.jpg").write_bytes(big.getvalue())
    os.mkfifo(folder / "fifo.png")
    (folder / "truncated.png").write_bytes((folder / "a_good.png").read_bytes()[:60])
    (folder / "root").symlink_to("/")  # never walked into
    (folder / "sub" / "loop").symlink_to("..")
    (folder / "new\nzoo: error: fake.png").write_bytes(b"not an image")
    result = run_zoo("predict", str(good), str(folder), "--json", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    predicted = {os.path.basename(r["image"]) for r in json.loads(result.stdout)}
    assert predicted == {"a_good.png", "z_good.jpg"}
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 7 and all(line.startswith("zoo: ") for line in lines), result.stderr
    assert "new\\nzoo: error: fake.png" in result.stderr  # a name's newline, escaped
    pattern = run_zoo("predict", str(good), "**/*_good.*", "--json", cwd=folder, timeout=120)
    assert pattern.returncode == 0, pattern.stderr
    assert sorted(r["image"] for r in json.loads(pattern.stdout)) == ["a_good.png", "sub/z_good.jpg"]


# ----------------------------------------------------------------------------- weights and data files
@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(input_size=8192), "'input_size' must be a whole number in 1..2048"),
    (lambda d: d.update(classes=None, num_classes=10), "records no class names"),
    (lambda d: d.update(in_chans=2, mean=[0.5, 0.5], std=[0.2, 0.2]), "grey (1) or colour (3)"),
])
def test_weights_that_predict_cannot_use_are_one_line(good, tmp_path, change, message):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    crafted = rewrite_metadata(good, tmp_path / "crafted.safetensors", change)
    one_line(run_zoo("predict", str(crafted), str(tmp_path / "x.png"), cwd=tmp_path), message)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(data_options={"root": "/etc"}), "sets data option 'root'"),
    (lambda d: d.update(trainer={"name": "fp32", "options": {"device": "meta", "compile": True}}), None),
])
def test_eval_takes_neither_a_data_folder_nor_a_device_from_the_weights(good, cifar_dir, tmp_path, change, message):
    crafted = rewrite_metadata(good, tmp_path / "crafted.safetensors", change)
    result = run_zoo("eval", str(crafted), "--data-dir", str(cifar_dir), "--json", cwd=tmp_path)
    if message:
        one_line(result, message)
    else:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["test_images"] == 20


def idx_gz(path, count: int, data: bytes = b""):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", 2051, count, 28, 28) + data)
    return path


@pytest.mark.parametrize("count", [10**7, 10**6])
def test_an_idx_header_that_claims_millions_of_images_is_one_line(tmp_path, count):
    from zoo_datasets.loaders import read_idx

    path = idx_gz(tmp_path / "train-images-idx3-ubyte.gz", count, b"\0" * 784)
    with pytest.raises(UserError, match="is not a valid idx file"):
        read_idx(path)


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_tar_extended_headers_that_claim_gigabytes_are_one_line(tmp_path, kind):
    from zoo_datasets.loaders import _shard_samples

    header = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax")
    header.type, header.size = kind, 8 << 30
    shard = tmp_path / "train" / "0.tar"
    shard.parent.mkdir()
    shard.write_bytes(header.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 2048)
    with pytest.raises(UserError, match="is not a readable tar shard"):
        _shard_samples([shard])


# ----------------------------------------------------------------------------- options, configs, environment
@pytest.mark.parametrize("args, message", [
    (["--opt-set", "lr=0.1"], "--opt-set may not set lr: zoo sets it from --lr"),
    (["--opt-set", "weight_decay=0.1"], "may not set weight_decay: zoo sets it from --wd"),
    (["--sched-set", "epochs=5"], "may not set epochs: zoo sets it from --epochs"),
    (["--data", "imagefolder", "--data-set", "stream=maybe"], "stream must be true or false"),
])
def test_options_zoo_sets_itself_or_of_the_wrong_type_are_one_line(cifar_dir, tmp_path, args, message):
    one_line(run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), "--epochs", "1", *args, cwd=tmp_path), message)
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


@pytest.mark.parametrize("change, message", [
    ({"data_options": {"root": "/etc"}}, "may not set root"),
    ({"lr": 10**400}, "learning rate must be positive and finite"),
    ({"model": "timm/resnet18", "model_options": {"checkpoint_path": "/etc/passwd"}}, "may not set"),
    ({"model": "timm/resnet18", "model_options": {"pretrained_cfg_overlay": {"file": "/x"}}}, "may not set"),
])
def test_a_config_file_that_would_read_a_path_or_overflow_is_one_line(cifar_dir, tmp_path, change, message):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model": "vgg_bn", "data": "cifar10", "epochs": 1, "data_dir": str(cifar_dir),
                                  "batch_size": 20, **change}))
    one_line(run_zoo("train", "--config", str(config), cwd=tmp_path), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "data"]


@pytest.mark.parametrize("size", ["0", "100000"])
def test_info_refuses_an_input_size_out_of_bounds(size):
    one_line(run_zoo("info", "resnet20", "--input-size", size), "--input-size must be in 1..2048")


@pytest.mark.parametrize("value", ["abc", "1e999", "-1", "nan"])
def test_a_bad_plugin_timeout_is_one_line(value):
    one_line(run_zoo("list", env={"ZOO_PLUGIN_TIMEOUT": value}), "ZOO_PLUGIN_TIMEOUT must be a number of seconds")


def test_a_plugin_printing_when_imported_or_called_never_breaks_json(plugin_dir, tmp_path):
    from conftest import make_plugin_dist

    make_plugin_dist(plugin_dir, "zoo-chatty", "chatty", '''
        from zoo import Architecture, hookimpl
        print("hello from the plugin")

        @hookimpl
        def architectures():
            return [Architecture("chatty", "chatty_build:build", "prints")]
    ''')
    (plugin_dir / "chatty_build.py").write_text(
        "import torch\nprint('imported')\n"
        "def build(num_classes=10, in_chans=3, input_size=32):\n"
        "    print('building')\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_chans * input_size ** 2, num_classes))\n")
    env = {"PYTHONPATH": os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")])}
    result = run_zoo("info", "chatty", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "chatty"
    assert "imported" in result.stderr and "building" in result.stderr


def test_telemetry_is_off_and_trackers_write_inside_the_run_folder(cifar_dir, tmp_path):
    """MLflow's telemetry and W&B's error reports would reach out; a proxy that records connections
    shows none is made, and nothing lands in the home folder."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    connections = []

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(conn.recv(200))
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "XDG_CONFIG_HOME": str(home / ".config"),
           "WANDB_MODE": "offline", "https_proxy": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy,
           "HTTP_PROXY": proxy, "no_proxy": "", "NO_PROXY": "",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), "--set", "layout=8,M", "--epochs", "1",
                     "--batch-size", "20", "--aug", "none", "--log", "mlflow", "--log", "wandb", "--run-dir", "run",
                     "--out", "w.safetensors", env=env, cwd=tmp_path, timeout=300)
    listener.close()
    assert result.returncode == 0, result.stderr
    assert connections == []
    assert [p for p in home.rglob("*") if p.is_file()] == []
    assert (tmp_path / "run" / "wandb").is_dir()
