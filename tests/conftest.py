from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
