"""Run folders: default names, claiming a folder atomically, emptying one for --overwrite, and the
config of a run to resume."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import check_finite
from .config import RunConfig
from ..base.errors import UserError, one_line
from ..registry.catalog import GivenObject, default_registry
from ..registry.specs import split_qualified
from ..io.weights import read_header, save_weights

if TYPE_CHECKING:
    import torch

    from ..registry.catalog import Registry


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
        data = split_qualified(config.data)[1]
        given = GivenObject.named(config.model)  # a model given as a module is named by its class (Net)
        model = given.what.rpartition(".")[2] if given else config.model
        name = unique_name(f"{model.replace(':', '_').replace('/', '_')}-{data}-{stamp}",
                            (Path("runs"), ""), (Path("weights"), ".safetensors"))
        run_dir, weights = Path("runs") / name, Path("weights") / f"{name}.safetensors"
    if weights is None:
        weights = Path("weights") / f"{Path(run_dir).name}.safetensors"
    weights = Path(weights).absolute()
    check_weights_name(weights)
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
                  loggers_write: tuple[str, ...] = (), held: int | None = None) -> tuple[Path, Path, int]:
    """Make the run folder, atomically, so that two runs never share one, and hold it
    (:func:`hold_run_dir`). A default name taken since the run started moves on to the next free one;
    a folder given with --overwrite is emptied of zoo's files and what its loggers write (and refused
    if it holds others, or if another process holds it; ``held``: this process holds it already)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    base, n = run_dir.name, 1
    while True:
        try:
            run_dir.mkdir()
            return run_dir, weights, hold_run_dir(run_dir)
        except FileExistsError:
            if named_by_zoo:
                n += 1
                run_dir = run_dir.with_name(f"{base}-{n}")
                weights = weights.with_name(f"{base}-{n}.safetensors")
                continue
            if not overwrite:
                raise UserError(f"{run_dir} exists (another run made it); choose another `run_dir` or pass "
                                "`overwrite`") from None
            if not run_dir.is_dir():
                raise UserError(f"{run_dir} is not a folder; choose another `run_dir`") from None
            held = hold_run_dir(run_dir) if held is None else held
            _empty_run_dir(run_dir, ZOO_RUN_FILES + loggers_write)
            return run_dir, weights, held


def remove_unstarted_run(run_dir: Path, ours: tuple[str, ...], made: bool) -> None:
    """Take back what a new run wrote before it failed, when it has no checkpoint to resume from: its
    files, its loggers', and the folder if the run made it. A half-written run is never left."""
    if not run_dir.is_dir() or (run_dir / "checkpoint.safetensors").exists():
        return
    with contextlib.suppress(UserError, OSError):  # the failure being reported matters more
        _empty_run_dir(run_dir, ours)
        if made:
            run_dir.rmdir()


def _empty_run_dir(run_dir: Path, ours: tuple[str, ...]) -> None:
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


def resume_config(config: RunConfig | None, run_dir: Path,
                  changes: dict[str, Any] | None = None) -> tuple[RunConfig, Path, Path]:
    """The config to continue ``run_dir`` with (``config``, or the run's own with ``changes`` when None),
    the run folder, and where config.json says the run writes its weights: a file's word, for
    :func:`resumed_weights` to compare with zoo's own places, never a place to write. A config that
    changes what the run computes is refused."""
    if run_dir.is_file():
        run_dir = run_dir.parent
    run_dir = run_dir.absolute()
    try:
        recorded = RunConfig.read_file(run_dir / "config.json")["weights"]
        if not isinstance(recorded, str):
            raise UserError(f"{run_dir}/config.json does not say where the run writes its weights")
    except (UserError, OSError, KeyError) as exc:
        raise UserError(f"cannot resume: {run_dir} is not a run folder (no readable config.json); `resume` takes "
                        "a run folder such as runs/<run>") from exc
    with naming_missing_plugins(run_dir):  # its names and options checked: the run's own errors
        previous = RunConfig.from_file(run_dir / "config.json")
    config = replace(previous, **(changes or {})) if config is None else config
    differ = [f.name for f in fields(RunConfig) if f.name not in RunConfig.RESUMABLE_CHANGES
              and json.dumps(getattr(previous, f.name)) != json.dumps(getattr(config, f.name))]
    if differ:
        raise UserError(f"cannot resume {run_dir}: it was run with other {', '.join(sorted(differ))} "
                        f"(e.g. {differ[0]}={getattr(previous, differ[0])!r})")
    return config, run_dir, Path(recorded)


class MadeWithMissingPlugin(UserError):
    """A resumed run's names are those of a plugin that is not loaded here."""


@contextlib.contextmanager
def naming_missing_plugins(run_dir: Path, registry: "Registry | None" = None):
    """Around reading a resumed run's names: an error where the run was made with a plugin that is not
    installed here (or disabled, or broken) names that plugin."""
    try:
        yield
    except MadeWithMissingPlugin:
        raise
    except UserError as error:
        missing = _missing_plugins(run_dir, registry or default_registry())
        if not missing:
            raise
        raise MadeWithMissingPlugin(f"{error}; the run was made with plugin {', '.join(map(repr, missing))}, which "
                                    "is not installed here: install it to resume the run") from error


def _missing_plugins(run_dir: Path, registry: "Registry") -> list[str]:
    """The plugins a run's config.json says it was made with that are not loaded here (none where the
    file says nothing readable of them)."""
    run_dir = run_dir.parent if run_dir.is_file() else run_dir
    try:
        plugins = RunConfig.read_file(run_dir / "config.json")["provenance"]["plugins"]
    except (UserError, KeyError, TypeError):
        return []
    return registry.missing([name for name in plugins if isinstance(name, str)]) if isinstance(plugins, dict) else []


def resumed_weights(run_dir: Path, recorded: Path, weights: str | Path | None) -> Path:
    """The weights file a resumed run writes: ``weights`` when given, else zoo's own place for its
    folder when that is where the run wrote (``recorded``); never a file zoo did not write for it."""
    target = Path(weights).absolute() if weights is not None else _weights_place(run_dir, recorded)
    check_weights_name(target)
    if os.path.lexists(target) and not _written_by(target, run_dir):
        raise UserError(f"{target} was not written by {run_dir}; zoo will not replace it (choose another `weights`)")
    return target


def _weights_place(run_dir: Path, recorded: Path) -> Path:
    """Where a resumed run writes its weights when not told: one of zoo's places for this run folder
    (:func:`weights_places`), when it is where config.json says the run wrote; else the user says."""
    places = weights_places(run_dir)
    if run_dir.parent.name == "runs" and not recorded.is_absolute():  # recorded before paths were whole
        recorded = run_dir.parent.parent / recorded
    found = next((place for place in places if _same_path(place, recorded)), None)
    if found is None:
        raise UserError(f"{run_dir} was started writing its weights to {one_line(str(recorded))}, which is not where "
                        f"zoo puts them ({places[0]}); zoo takes no place to write from a file: give `weights` "
                        "to say where")
    return found


def weights_places(run_dir: Path) -> list[Path]:
    """Where zoo puts the weights of the run in ``run_dir`` by its own rules, the likeliest first:
    ``<root>/runs/NAME`` -> ``<root>/weights/NAME.safetensors``; ``weights/NAME.safetensors`` in the
    current folder (a new run's default); ``NAME.safetensors`` beside the run folder."""
    name = f"{run_dir.name}.safetensors"
    places = [Path("weights").absolute() / name, run_dir.parent / name]  # a new run's default; beside the folder
    if run_dir.parent.name == "runs":
        places.insert(0, run_dir.parent.parent / "weights" / name)
    return places


def is_weights_place(run_dir: Path, weights: Path) -> bool:
    return any(_same_path(place, weights) for place in weights_places(run_dir))


def _same_path(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _written_by(weights: Path, run_dir: Path) -> bool:
    run = read_header(weights)[1].get("run")
    return isinstance(run, str) and _same_path(Path(run), run_dir)


def check_weights_name(path: Path) -> None:
    """zoo writes weights only under its own suffix: never a .pth that Python runs at start-up, or a
    name some other program acts on."""
    if path.suffix != ".safetensors":
        raise UserError(f"zoo writes weights only to .safetensors files, not {one_line(path.name)}")


def hold_run_dir(run_dir: Path) -> int:
    """An OS lock on the run folder for as long as this process lives (released on any death): two
    processes never train in one folder. The file descriptor keeps it; the folder gets no file."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the atomic claim of a new folder still holds
        return -1
    fd = os.open(run_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{run_dir} is in use by another zoo process; wait for it to end, or resume it "
                        "once it has") from None
    except OSError:  # a file system without locks (some NFS mounts): the atomic claim still holds
        os.close(fd)
        return -1
    return fd


def check_no_links_out(run_dir: Path, names: tuple[str, ...], limit: int = 100_000) -> None:
    """Refuse a run folder whose files zoo or its loggers write are links leading out of it: writing
    or appending to them would write elsewhere."""
    root = os.path.realpath(run_dir)
    seen = 0
    for name in names:
        path = run_dir / name
        stack = [path] if os.path.lexists(path) else []
        while stack:
            entry = stack.pop()
            seen += 1
            if seen > limit:
                raise UserError(f"{run_dir} holds more than {limit} files where zoo's loggers write; choose "
                                "another run folder")
            if entry.is_symlink():
                inside = os.path.realpath(entry)
                if os.path.commonpath([root, inside]) != root or entry == path:
                    raise UserError(f"{entry} is a link; zoo does not write through links in a run folder")
            elif entry.is_dir():
                stack.extend(entry.iterdir())


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
