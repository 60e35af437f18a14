"""What reproduces a run, recorded in its config.json and weights: versions of zoo, torch, torchvision,
timm and every plugin it used, the git commit of the working tree, the command line, the machine."""
from __future__ import annotations

import importlib.metadata as metadata
import platform
import stat
import sys
from pathlib import Path
from typing import Any

import torch

from ..base.version import __version__


def provenance(run, trainer) -> dict[str, Any]:
    """For a resolved ``run`` (its specs name the plugins used) trained by ``trainer``."""
    specs = [run.data_spec, run.opt[0], run.sched[0], run.trainer_spec, *(spec for spec, _ in run.augs)]
    plugins = sorted({spec.plugin for spec in specs if spec is not None} | set(_model_plugins(run)))
    return {
        "versions": {"zoo": __version__, "python": platform.python_version(),
                     **{name: _version(name) for name in ("torch", "torchvision", "timm")}},
        "plugins": {name: getattr(run.registry.plugins.get(name), "version", "") for name in plugins},
        "command": list(sys.argv),
        "git_commit": git_commit(Path.cwd()),
        "machine": machine(trainer.device),
    }


def _model_plugins(run) -> list[str]:
    if run.model_object is not None:
        return []
    wrappers, arch = run.registry.resolve_model(run.config.model)
    return [arch.plugin, *(w.plugin for w in wrappers)]


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def git_commit(folder: Path) -> str | None:
    """The commit checked out in the git working tree around ``folder``, read from ``.git`` itself:
    running git in a folder someone else made could run their hooks (core.fsmonitor). Only regular
    files are read, and only their first 64 KiB: a FIFO or a huge file there must not stall a run."""
    for candidate in (folder, *folder.parents):
        git = candidate / ".git"
        if git.is_dir():
            head = _small_text(git / "HEAD")
            if head is None or not head.startswith("ref: "):
                return head
            ref = head[5:]
            if (found := _small_text(git / ref)) is not None:
                return found
            for line in (_small_text(git / "packed-refs") or "").splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0]
            return None
    return None


def _small_text(path: Path) -> str | None:
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None
        with open(path, "rb") as f:
            return f.read(1 << 16).decode(errors="replace").strip()
    except OSError:
        return None


def machine(device: torch.device) -> dict[str, Any]:
    """The device, and the CPU features that change zoo's decisions (native bf16 for --amp)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or
                                                                               platform.machine())
    return {"device": str(device), "name": name,
            "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})}
