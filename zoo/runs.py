"""Run folders: default names, claiming a folder atomically, emptying one for --overwrite, and the
config of a run to resume."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import check_finite
from .config import RunConfig
from .errors import UserError
from .registry import GIVEN
from .weights import read_header, save_weights

if TYPE_CHECKING:
    import torch


def unique_name(base: str, *folders_and_suffixes: tuple[Path, str]) -> str:
    name, n = base, 1
    while any((folder / f"{name}{suffix}").exists() for folder, suffix in folders_and_suffixes):
        n += 1
        name = f"{base}-{n}"
    return name


def new_run_paths(config: RunConfig, run_dir, weights, overwrite: bool) -> tuple[Path, Path]:
    """The run folder and weights file of a new run, absolute, checked but not made: a user error that
    stops the run must leave nothing behind. Default names are claimed when the run starts writing."""
    if run_dir is None and weights is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        data = config.data.rpartition(":")[2]
        # a model given as a module is named by its class (python:pkg.Net -> Net)
        model = config.model.rpartition(".")[2] if config.model.startswith(GIVEN) else config.model
        name = unique_name(f"{model.replace(':', '_').replace('/', '_')}-{data}-{stamp}",
                            (Path("runs"), ""), (Path("weights"), ".safetensors"))
        run_dir, weights = Path("runs") / name, Path("weights") / f"{name}.safetensors"
    if weights is None:
        weights = Path("weights") / f"{Path(run_dir).name}.safetensors"
    weights = Path(weights).absolute()
    run_dir = (Path("runs") / weights.stem if run_dir is None else Path(run_dir)).absolute()
    for path in (weights, run_dir):
        _check_name_lengths(path)
    if not overwrite:
        for path, option in ((weights, "`weights`"), (run_dir, "`run_dir`")):
            if path.exists():
                raise UserError(f"{path} exists; choose another {option} or pass `overwrite`")
    for folder in (weights.parent, run_dir.parent):  # checked now, made when the run writes there
        check_writable(folder)
    return run_dir, weights


def _check_name_lengths(path: Path) -> None:
    """Refuse now a name the file system would refuse after an hour of training."""
    for part in path.parts:
        if len(os.fsencode(part)) + len(".checkpoint.safetensors.XXXXXXXX.tmp") > 255:
            raise UserError(f"the name {part[:40]}... is too long for a file name ({len(os.fsencode(part))} bytes)")


ZOO_RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.safetensors")


def claim_run_dir(run_dir: Path, weights: Path, overwrite: bool, named_by_zoo: bool,
                  loggers_write: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Make the run folder, atomically, so that two runs never share one. A default name taken since
    the run started moves on to the next free one; a folder given with --overwrite is emptied of
    zoo's files and what its loggers write (and refused if it holds others)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    base, n = run_dir.name, 1
    while True:
        try:
            run_dir.mkdir()
            return run_dir, weights
        except FileExistsError:
            if named_by_zoo:
                n += 1
                run_dir = run_dir.with_name(f"{base}-{n}")
                weights = weights.with_name(f"{base}-{n}.safetensors")
                continue
            if not overwrite:
                raise UserError(f"{run_dir} exists (another run made it); choose another `run_dir` or pass "
                                "`overwrite`") from None
            _empty_run_dir(run_dir, ZOO_RUN_FILES + loggers_write)
            return run_dir, weights


def _empty_run_dir(run_dir: Path, ours: tuple[str, ...]) -> None:
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder; choose another `run_dir`")
    entries = list(run_dir.iterdir())
    foreign = [p.name for p in entries if p.name not in ours and not _is_temporary(p)]
    if foreign:
        raise UserError(f"`overwrite`: {run_dir} holds files zoo did not write ({', '.join(sorted(foreign)[:3])}); "
                        "choose another `run_dir`")
    for path in entries:
        if path.is_dir() and not path.is_symlink():  # a logger's folder (tensorboard/)
            shutil.rmtree(path)
        else:
            path.unlink()


def _is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def check_writable(folder: Path) -> None:
    """Whether ``folder`` could be made and written to, without making it: a user error that stops the
    run must leave nothing behind."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"cannot write to {folder}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to {folder}: permission denied")


def resume_config(config: RunConfig | None, run_dir: Path, weights: str | Path | None,
                  changes: dict[str, Any] | None = None) -> tuple[RunConfig, Path, Path]:
    """The config to continue ``run_dir`` with (``config``, or the run's own with ``changes`` when None),
    the run folder, and the weights file the run writes. A config that changes what the run computes
    is refused."""
    if run_dir.is_file():
        run_dir = run_dir.parent
    run_dir = run_dir.absolute()
    try:
        previous = RunConfig.from_file(run_dir / "config.json")
        recorded = json.loads((run_dir / "config.json").read_text())["weights"]
        if not isinstance(recorded, str):
            raise UserError(f"{run_dir}/config.json does not say where the run writes its weights")
    except (UserError, OSError, KeyError) as exc:
        raise UserError(f"cannot resume: {run_dir} is not a run folder (no readable config.json); `resume` takes "
                        "a run folder such as runs/<run>") from exc
    recorded = Path(recorded)
    if not recorded.is_absolute():  # written before paths were recorded whole: runs/<run> beside weights/
        if run_dir.parent.name != "runs":
            raise UserError(f"cannot tell where {run_dir} writes its weights ({recorded}, relative); resume it from "
                            "the folder it was started in")
        recorded = run_dir.parent.parent / recorded
    if weights is not None and Path(weights).absolute() != recorded:
        raise UserError(f"{run_dir} writes its weights to {recorded}; resume it without `weights`")
    config = replace(previous, **(changes or {})) if config is None else config
    differ = [f.name for f in fields(RunConfig) if f.name not in RunConfig.RESUMABLE_CHANGES
              and json.dumps(getattr(previous, f.name)) != json.dumps(getattr(config, f.name))]
    if differ:
        raise UserError(f"cannot resume {run_dir}: it was run with other {', '.join(sorted(differ))} "
                        f"(e.g. {differ[0]}={getattr(previous, differ[0])!r})")
    if recorded.exists() and read_header(recorded)[1].get("run") != str(run_dir):
        raise UserError(f"{recorded} was not written by {run_dir}; zoo will not replace it")
    return config, run_dir, recorded


def save_run_weights(model: torch.nn.Module, weights: Path, run_dir: Path, replace: bool, **info: Any) -> None:
    """The run's weights where it was asked to write them; if another run took that file meanwhile,
    in the run folder, so that an hour of training is never lost."""
    check_finite(model.state_dict(), run_dir / "checkpoint.safetensors", "the end", "the last")
    try:
        save_weights(model, weights, replace=replace, **info)
    except FileExistsError:
        kept = save_weights(model, run_dir / "weights.safetensors", **info)
        raise UserError(f"{weights} was written by another run meanwhile and is left as it is; this run's weights "
                        f"are in {kept}") from None
