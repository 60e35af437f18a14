from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zoo.training import SilentReporter

ROOT = Path(__file__).resolve().parents[1]


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
