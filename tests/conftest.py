from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from zoo import SilentReporter

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:  # pytest -n: workers share the cores, so each (and each CLI it starts) takes its share
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def run_zoo(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 600,
            python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("ZOO_DEBUG", None)
    return subprocess.run([sys.executable, *python_flags, "-m", "zoo", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def make_plugin_dist(root: Path, dist: str, module: str, source: str, entry_point: str | None = None) -> Path:
    """A fake installed distribution: ``<dist>-1.0.dist-info`` with an entry point, plus its module."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[zoo.plugins]\n{entry_point or module} = {module}\n")
    return root


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path for fake plugin distributions."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def write_cifar10(root: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """A ``cifar-10-batches-py`` folder in the original format: protocol-2 pickles of dicts with bytes
    keys, ``data`` a uint8 numpy array of shape (N, 3072), ``labels`` a list of ints."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for file in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_batch)
        # Learnable: each class has its own mean colour, plus noise.
        data = (labels[:, None] * 20 + rng.integers(0, 60, (per_batch, 3072))).clip(0, 255).astype(np.uint8)
        batch = {b"batch_label": file.encode(), b"labels": labels.tolist(), b"data": data,
                 b"filenames": [f"{i}.png".encode() for i in range(per_batch)]}
        (folder / file).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in names], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


@pytest.fixture
def cifar_dir(tmp_path):
    return write_cifar10(tmp_path / "data")


class StopAtEpoch(SilentReporter):
    """Interrupts training as the given epoch (0-based) starts, as Ctrl-C would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def epoch_start(self, epoch, steps):
        if epoch == self.epoch:
            raise KeyboardInterrupt


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A folder, and the URL under which an HTTP server on localhost serves it. ``server.requests``
    lists every path asked for, so a test can prove that nothing was fetched."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    folder = tmp_path / "served"
    folder.mkdir()
    requests: list[str] = []

    class Handler(QuietHandler):
        def __init__(self, *args):
            super().__init__(*args, directory=str(folder))

        def send_head(self):
            requests.append(self.path)
            return super().send_head()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield ServedFolder(folder, f"http://127.0.0.1:{httpd.server_port}/", requests)
    httpd.shutdown()
    httpd.server_close()


class ServedFolder(tuple):
    """(folder, url), unpackable as before, with the requests the server saw."""

    def __new__(cls, folder: Path, url: str, requests: list[str]):
        served = super().__new__(cls, (folder, url))
        served.folder, served.url, served.requests = folder, url, requests
        return served


def rewrite_metadata(source: Path, target: Path, change=None, raw: str | None = None) -> Path:
    """A copy of the safetensors file ``source`` whose zoo metadata is ``change(document)`` (or the
    text ``raw``), tensors untouched: what an attacker hands to zoo."""
    data = source.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    if raw is None:
        document = json.loads(header["__metadata__"]["zoo"])
        result = change(document)
        raw = json.dumps(document if result is None else result)
    header["__metadata__"] = {"zoo": raw}
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    target.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data[8 + size:])
    return target


REQUIRE_DATA_ENV = "ZOO_REQUIRE_DATA"  # set by .ci/run, which installs the data: a skip is then a failure


@pytest.fixture
def real_fashion_mnist() -> Path:
    """The folder of the real Fashion-MNIST; without it the test is skipped with how to get it (and
    fails where ``ZOO_REQUIRE_DATA=1`` says the data must be there)."""
    from zoo.data.images import data_root
    from zoo_datasets.loaders import DEBIAN_FASHION, FASHION_FILES

    for folder in (data_root() / "fashion-mnist", DEBIAN_FASHION):
        if all((folder / name).is_file() for name in FASHION_FILES):
            return folder
    reason = ("needs the real Fashion-MNIST: sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu), or its "
              f"four idx .gz files in {data_root() / 'fashion-mnist'}")
    if os.environ.get(REQUIRE_DATA_ENV):
        pytest.fail(reason)
    pytest.skip(reason)


TINY_VGG = {"layout": "8,M,16,M", "width": 1.0}


def tiny_config(**changes):
    """A two-epoch VGG run of the CIFAR-10 files ``cifar_dir`` writes: seconds on a CPU."""
    from zoo import RunConfig

    base = dict(model="vgg_bn", data="cifar10", epochs=2, batch_size=20, lr=0.05, model_options=dict(TINY_VGG),
                eval_batch_size=64, augs=["crop", "hflip"], aug_options={"crop": {"padding": 2}})
    if "augs" in changes:  # other augmentations, with their own options if any
        del base["aug_options"]
    return RunConfig(**{**base, **changes})


def picture_folder(root: Path, splits=(("train", 6), ("test", 2)), classes=("blue", "red")) -> Path:
    """An image folder of plain-coloured pictures, a class per colour."""
    from PIL import Image

    colours = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0)}
    for split, count in splits:
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (20, 24), colours[cls]).save(folder / f"{i}.png")
    return root
