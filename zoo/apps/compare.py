"""Comparisons: a grid of training runs from CLI options or a TOML file, run one after another,
resumable, then reported (zoo.report: a Markdown/CSV table and PNG plots)."""
from __future__ import annotations

import itertools
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from ..base.errors import UserError
from ..training.config import RunConfig, check_config_types, expand_shorthand
from .report import REPORT_FILES, write_report
from ..base.files import atomic_write_text, parse_json, read_bounded

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FIELDS = {f.name for f in fields(RunConfig)}
MAX_RUNS = 10_000  # a grid larger than this is a mistake, not a plan
COMPARISON_FILE = "comparison.json"  # marks a folder as a comparison's, so that a rerun may write its report


@dataclass
class Experiment:
    """A named grid: ``base`` options for every run, and axes whose cross product gives the runs.

    An axis is a list of variants; a variant is a value of the RunConfig field the axis is named
    after, or a table of field overrides with an optional ``label``.
    """

    name: str
    base: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    seeds: int = 1  # runs of every grid point, with seeds seed, seed + 1, ...: the table shows mean and spread
    settings: dict[str, Any] = field(default_factory=dict)  # the command line's, over base and quick alike

    @classmethod
    def from_toml(cls, path: Path) -> "Experiment":
        text = read_bounded(Path(path), "experiment", 1 << 20, "an experiment file")
        try:
            document = tomllib.loads(text.decode())
        except RecursionError:
            raise UserError(f"{path} is nested too deeply to be an experiment") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} is not valid TOML: {exc}") from exc
        unknown = set(document) - {"name", "description", "base", "grid", "quick", "seeds"}
        if unknown:
            raise UserError(f"{path}: unknown sections {', '.join(sorted(unknown))} (use name, description, seeds, "
                            f"base, grid, quick)")
        seeds = document.get("seeds", 1)
        if type(seeds) is not int or not 1 <= seeds <= 100:
            raise UserError(f"{path}: seeds must be a whole number in 1..100, got {seeds!r}")
        for section in ("base", "grid", "quick"):
            if not isinstance(document.get(section, {}), dict):
                raise UserError(f"{path}: [{section}] must be a table")
        experiment = cls(_slug(str(document.get("name", Path(path).stem))), dict(document.get("base", {})),
                         dict(document.get("grid", {})), dict(document.get("quick", {})),
                         str(document.get("description", "")), seeds)
        experiment.runs()  # validate now
        return experiment

    def runs(self, quick: bool = False, registry=None) -> list[tuple[str, dict[str, str], RunConfig]]:
        """(slug, labels per axis, config) for every run of the grid. Choices may be given in the
        command line's shorthand (``sched = "multistep=[20,30,40]"``); ``registry`` knows their options."""
        _check_fields(self.base, "base")
        _check_fields(self.quick, "quick")
        base = expand_shorthand(self.base, registry)
        if quick:
            base.update(expand_shorthand(self.quick, registry, base))
        base.update(expand_shorthand(self.settings, registry, base))
        check_config_types(RunConfig(**base))  # wrong here is wrong, even where every run overrides it
        quick_model_options = self.quick.get("model_options", {}) if quick else {}
        axes = []
        for axis, variants in self.axes.items():
            if not isinstance(variants, list) or not variants:
                raise UserError(f"grid axis {axis!r} must be a non-empty list")
        size = math.prod(len(v) for v in self.axes.values()) * self.seeds
        if size > MAX_RUNS:
            raise UserError(f"experiment {self.name!r} is a grid of {size:,} runs; at most {MAX_RUNS:,}")
        for axis, variants in self.axes.items():
            axes.append([(axis, *_variant(axis, v)) for v in variants])
        result, seen, configs = [], set(), {}
        for combination in itertools.product(*axes) if axes else [()]:
            options = dict(base)
            labels = {}
            for axis, label, overrides in combination:
                options.update(expand_shorthand(overrides, registry, options))
                labels[axis] = label
            if quick_model_options:  # quick shrinks every model, whatever its own options
                options["model_options"] = {**options.get("model_options", {}), **quick_model_options}
            try:
                config = RunConfig(**options)
            except TypeError as exc:
                raise UserError(f"experiment {self.name!r}: {exc}") from exc
            check_config_types(config)  # TOML has dates, tables and floats where a run wants other types
            slug = _slug("-".join(labels.values()) or self.name)
            while slug in seen:
                slug += "_"
            seen.add(slug)
            same = configs.setdefault(json.dumps(asdict(config), sort_keys=True), slug)
            if same != slug:
                raise UserError(f"experiment {self.name!r}: runs {same} and {slug} would be the same run; "
                                "a value is given twice")
            if self.seeds == 1:
                result.append((slug, labels, config))
            else:
                result += [(f"{slug}-seed{k}", {**labels, "seed": str(config.seed + k)},
                            replace(config, seed=config.seed + k)) for k in range(self.seeds)]
        return result


def _check_fields(options: dict[str, Any], where: str) -> None:
    unknown = set(options) - CONFIG_FIELDS
    if unknown:
        raise UserError(f"unknown option {', '.join(sorted(unknown))} in {where}; options are the fields of a run: "
                        f"{', '.join(sorted(CONFIG_FIELDS))}")


def _variant(axis: str, value: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(value, dict):
        overrides = {k: v for k, v in value.items() if k != "label"}
        _check_fields(overrides, f"grid axis {axis!r}")
        label = str(value.get("label") or "+".join(_label(v) for v in overrides.values()))
        return label, overrides
    if axis not in CONFIG_FIELDS:
        raise UserError(f"grid axis {axis!r} is not a run option, so its variants must be tables of options")
    return _label(value), {axis: value}


def _label(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(map(str, value)) or "none"
    return str(value)


def _slug(text: str) -> str:
    """A name safe as one path component: no separators, no leading dot (so never ``..``)."""
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", text).strip("_.")[:120] or "run"


def checked_runs(experiment: Experiment, quick: bool = False,
                 registry=None) -> list[tuple[str, dict[str, str], RunConfig]]:
    """The experiment's runs, every name and option of each checked, as before the first run starts, with
    the defaults the installed plugins declare."""
    from ..training.config import Run

    return [(slug, labels, Run.resolve(config, registry).config) for slug, labels, config
            in experiment.runs(quick, registry)]


def data_checked(runs: list[tuple[str, dict[str, str], RunConfig]], registry=None) -> list[str]:
    """What --dry-run says of the data: each run's dataset loaded as the run would load it (its subset and
    batch size checked), once per distinct one, but never downloaded. A dataset that is missing is an
    error, unless the runs may download it: then a line saying so."""
    from ..training.config import Run

    notes, seen = [], set()
    for slug, _, config in runs:
        key = json.dumps([config.data, config.data_dir, config.data_options, config.train_limit, config.test_limit,
                          config.batch_size], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        run = Run.resolve(config, registry)
        try:
            data = run.dataset(download=False)
        except UserError as exc:
            if not config.download:
                raise UserError(f"run {slug}: {exc}") from exc
            notes.append(f"run {slug}: {exc}; the run will try to download it")
            continue
        try:
            run.subset(data)
        except UserError as exc:
            raise UserError(f"run {slug}: {exc}") from exc
    return notes


def run_experiment(experiment: Experiment, out: Path, quick: bool = False, registry=None, baseline: str | None = None,
                   x_axis: str = "epoch", reporter_factory: Callable[[str], Any] | None = None,
                   on_skip: Callable[[str], None] | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Run every run of the grid not finished yet, one after another, then write the report
    (:func:`write_report`: its rows and the baseline's name).

    A run is finished when its weights file exists; one with a run folder but no weights is resumed.
    """
    from ..training.loop import train

    runs = checked_runs(experiment, quick, registry)
    check_output(out, experiment.name)
    run_dirs = []
    for slug, labels, config in runs:
        run_dir, weights = out / "runs" / slug, out / "weights" / f"{slug}.safetensors"
        run_dirs.append(run_dir)
        if weights.exists():
            if on_skip:
                on_skip(slug)
            continue
        reporter = reporter_factory(slug) if reporter_factory else None
        resume = run_dir if (run_dir / "config.json").exists() else None
        # a finished run of a comparison is never resumed (its weights say it is done): no checkpoint kept
        train(config, registry=registry, run_dir=run_dir, weights=weights, resume=resume, reporter=reporter,
              keep_checkpoint=False)
    atomic_write_text(out / COMPARISON_FILE, json.dumps({"experiment": experiment.name}) + "\n")
    return write_report(run_dirs, out, title=experiment.name, baseline=baseline, x_axis=x_axis)


def check_output(out: Path, name: str) -> None:
    """Whether ``out`` may be the folder of the comparison ``name`` (new, or one to continue); refuse a
    folder that holds anything else: a report of the user's own, their files, another comparison.
    The report's folder is marked (COMPARISON_FILE) as it is written, so a rerun may rewrite it."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is not a folder; choose another --out")
    entries = {p.name for p in out.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))} \
        if out.is_dir() else set()
    foreign = entries - {"runs", "weights", COMPARISON_FILE, *REPORT_FILES}
    if foreign:
        raise UserError(f"{out} holds files zoo compare did not write ({', '.join(sorted(foreign)[:3])}); choose "
                        "another --out")
    if COMPARISON_FILE in entries:
        marker = parse_json(read_bounded(out / COMPARISON_FILE, "comparison", 1 << 16, "a comparison's marker"),
                            str(out / COMPARISON_FILE))
        if not isinstance(marker, dict) or marker.get("experiment") != name:
            raise UserError(f"{out} holds another comparison; choose another --out")
        return
    if entries & set(REPORT_FILES):
        reports = ", ".join(sorted(entries & set(REPORT_FILES)))
        raise UserError(f"{out} holds a report zoo compare did not write there ({reports}); choose another --out")
