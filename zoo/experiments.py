"""Comparisons: a grid of training runs from CLI options or a TOML file, run one after another,
resumable, summarised in a Markdown/CSV table and PNG plots."""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from .errors import UserError
from .config import RunConfig, check_config_types
from .weights import read_metadata, regular_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FIELDS = {f.name for f in fields(RunConfig)}
REPORT_FILES = ("results.md", "results.csv", "accuracy.png", "loss.png")
MAX_RUNS = 10_000  # a grid larger than this is a mistake, not a plan
COLUMNS = ["run", "dataset", "network", "epochs", "planned epochs", "batch size", "lr", "optimizer", "schedule",
           "augmentation", "seeds", "test accuracy", "test accuracy std", "vs baseline", "within spread",
           "best test accuracy", "time (s)", "images/s", "parameters"]
X_AXES = ("epoch", "time")
SEED_SUFFIX = re.compile(r"-seed\d+$")  # runs of one grid point with other seeds: x-seed0, x-seed1, ...


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

    @classmethod
    def from_toml(cls, path: Path) -> "Experiment":
        text = regular_file(Path(path), "experiment").read_bytes()
        if len(text) > 1 << 20:
            raise UserError(f"{path} is larger than an experiment file could be (1 MB)")
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

    def runs(self, quick: bool = False) -> list[tuple[str, dict[str, str], RunConfig]]:
        """(slug, labels per axis, config) for every run of the grid."""
        base = {**self.base, **(self.quick if quick else {})}
        quick_model_options = self.quick.get("model_options", {}) if quick else {}
        _check_fields(base, "base" if not quick else "base/quick")
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
                options.update(overrides)
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
    from .config import Run

    return [(slug, labels, Run.resolve(config, registry).config) for slug, labels, config in experiment.runs(quick)]


def run_experiment(experiment: Experiment, out: Path, quick: bool = False, registry=None, baseline: str | None = None,
                   x_axis: str = "epoch", reporter_factory: Callable[[str], Any] | None = None,
                   on_skip: Callable[[str], None] | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Run every run of the grid not finished yet, one after another, then write the report
    (:func:`write_report`: its rows and the baseline's name).

    A run is finished when its weights file exists; one with a run folder but no weights is resumed.
    """
    from .training import train

    runs = checked_runs(experiment, quick, registry)
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
        train(config, registry=registry, run_dir=run_dir, weights=weights, resume=resume, reporter=reporter)
    return write_report(run_dirs, out, title=experiment.name, baseline=baseline, x_axis=x_axis)


def load_run(run_dir: Path) -> dict[str, Any]:
    """A run folder's config, metrics and parameter count, for reports."""
    try:
        config = json.loads((run_dir / "config.json").read_text())
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    except (OSError, ValueError) as exc:
        raise UserError(f"{run_dir} is not a run folder with config.json and metrics.jsonl") from exc
    saved = Path(config.get("weights", ""))
    weights = next((p for p in (saved, run_dir.parent.parent / "weights" / saved.name) if p.is_file()), None)
    parameters = read_metadata(weights).get("parameters") if weights else None
    return {"name": run_dir.name, "config": config, "metrics": metrics, "parameters": parameters,
            "finished": weights is not None}


def grouped(runs: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Runs that differ only in their seed (``x-seed0``, ``x-seed1``), together, in order of appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(SEED_SUFFIX.sub("", run["name"]), []).append(run)
    return list(groups.items())


def table_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run, or per grid point run with several seeds (their mean, and the standard
    deviation of the final test accuracy), of numbers (results.csv is read by programs);
    :func:`markdown_table` formats them."""
    rows = []
    for name, group in grouped(runs):
        c, m = group[0]["config"], group[0]["metrics"]
        options = ", ".join(f"{k}={v}" for k, v in _flatten(c.get("model_options", {})))
        finals = [r["metrics"][-1]["test_accuracy"] for r in group if r["metrics"]]
        rows.append({
            "run": name, "dataset": str(c.get("data", "")).rpartition(":")[2],
            "network": c["model"] + (f" ({options})" if options else ""),
            "epochs": len(m), "planned epochs": c["epochs"], "batch size": c["batch_size"], "lr": c["lr"],
            "optimizer": _bare(c["opt"]),
            "schedule": _bare(c["sched"]) + (f" (warmup {c['warmup']:g})" if c.get("warmup") else ""),
            "augmentation": "+".join(map(_bare, c["augs"])) or "none", "seeds": len(group),
            "test accuracy": _mean(finals),
            "test accuracy std": _std(finals) if len(finals) > 1 else None,
            "best test accuracy": _mean([max(r["test_accuracy"] for r in run["metrics"]) for run in group
                                         if run["metrics"]]),
            "time (s)": round(_mean([sum(r["seconds"] for r in run["metrics"]) for run in group]), 1),
            "images/s": round(sum(r["images_per_s"] for r in m) / len(m)) if m else None,
            "parameters": group[0]["parameters"],
        })
    return rows


def _bare(choice: str) -> str:
    """``optim:sgd-nesterov`` -> ``sgd-nesterov``: tables say what was chosen, not which plugin gave it."""
    name, sep, value = choice.partition("=")
    return name.rpartition(":")[2] + sep + value


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column.endswith("accuracy"):
        return f"{value:.2%}"
    if column == "vs baseline":
        return f"{100 * value:+.2f} pts"
    if column in ("images/s", "parameters"):
        return f"{value:,}"
    if column == "time (s)":
        return f"{value:.0f}"
    return str(value)


def _flatten(options: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in sorted(options.items()):
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((prefix + key, value))
    return items


def markdown_table(rows: list[dict[str, Any]], baseline: str | None = None) -> str:
    """The rows as Markdown; a test accuracy over several seeds as ``mean ± std`` (in points)."""
    columns = [c for c in COLUMNS if c not in ("test accuracy std", "within spread")
               and (c != "vs baseline" or any(row.get(c) is not None for row in rows))]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        cells = [_cell(c, row.get(c)) for c in columns]
        if row.get("test accuracy std") is not None:
            cells[columns.index("test accuracy")] += f" ± {100 * row['test accuracy std']:.2f}"
        if baseline is not None and row["run"] == baseline:
            cells[columns.index("vs baseline")] = "baseline"
        elif row.get("within spread"):
            cells[columns.index("vs baseline")] += " (within spread)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(run_dirs: list[Path], out: Path, title: str = "comparison", baseline: str | None = None,
                 x_axis: str = "epoch") -> tuple[list[dict[str, Any]], str | None]:
    """``results.md``, ``results.csv``, ``accuracy.png`` and ``loss.png`` in ``out``. ``baseline`` is a
    run (a name among the runs, or a run folder) or ``NAME=ACCURACY`` (the lab's 87.5%, say): each
    row then says how far its test accuracy is from it; without one, runs with several seeds are
    compared with the best row. A difference smaller than the seeds' spread is marked as such. Returns
    the rows and the baseline's name."""
    if x_axis not in X_AXES:
        raise UserError(f"the x axis is one of {', '.join(X_AXES)}, got {x_axis!r}")
    runs = [load_run(Path(d)) for d in run_dirs]
    rows, named = _with_baseline(runs, baseline)
    out.mkdir(parents=True, exist_ok=True)
    note = (f"\n\nvs baseline: test accuracy minus {named}'s, in points; \"within spread\" where the difference is "
            f"smaller than the runs' seed-to-seed spread (their standard deviations combined).\n" if named else "\n")
    (out / "results.md").write_text(f"# {title}\n\n{recipe(runs)}\n\n" + markdown_table(rows, named) + note +
                                    "\n![test accuracy](accuracy.png)\n\n![loss](loss.png)\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    (out / "results.csv").write_text(buffer.getvalue())
    plot_runs(runs, out, title, x_axis)
    return rows, named


def _with_baseline(runs: list[dict[str, Any]], baseline: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """The table's rows, each compared with the baseline's test accuracy; and the baseline's name."""
    rows = table_rows(runs)
    if baseline is None:
        if not any(row["seeds"] > 1 for row in rows):
            return rows, None
        reference = max(rows, key=lambda row: row["test accuracy"] or 0)
    elif any(row["run"] == baseline for row in rows):
        reference = next(row for row in rows if row["run"] == baseline)
    elif Path(baseline).is_dir():
        reference = table_rows([load_run(Path(baseline))])[0]
        rows.insert(0, reference)
    elif "=" in baseline:
        name, _, text = baseline.rpartition("=")
        try:
            accuracy = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
        except ValueError:
            accuracy = math.nan
        if not (name.strip() and 0 <= accuracy <= 1):
            raise UserError(f"a baseline is a run or NAME=ACCURACY, e.g. 'lab VGG16=87.5%' or 'lab=0.875'; "
                            f"got {baseline!r}")
        reference = {column: None for column in COLUMNS} | {"run": name.strip(), "seeds": 1, "test accuracy": accuracy}
        rows.insert(0, reference)
    else:
        raise UserError(f"baseline {baseline!r} is not one of the runs ({', '.join(r['run'] for r in rows)}), a run "
                        "folder, or NAME=ACCURACY")
    for row in rows:
        if row["test accuracy"] is None or reference["test accuracy"] is None:
            continue
        row["vs baseline"] = row["test accuracy"] - reference["test accuracy"]
        spread = math.hypot(row["test accuracy std"] or 0, reference["test accuracy std"] or 0)
        row["within spread"] = (abs(row["vs baseline"]) < spread) if spread and row is not reference else None
    return rows, reference["run"]


def recipe(runs: list[dict[str, Any]]) -> str:
    """What every run shares, in words (the data, epochs, optimizer, ...); what differs is in the rows."""
    def shared(value: Callable[[dict[str, Any]], Any]) -> Any:
        values = {json.dumps(value(run["config"]), sort_keys=True) for run in runs}
        return value(runs[0]["config"]) if len(values) == 1 else None

    parts = [
        shared(lambda c: str(c.get("data", "")).rpartition(":")[2]),
        (f"{epochs} epochs" if (epochs := shared(lambda c: c["epochs"])) else None),
        (f"batch {batch}" if (batch := shared(lambda c: c["batch_size"])) else None),
        (f"{opt} lr {lr:g}" if (opt := shared(lambda c: _bare(c["opt"]))) and (lr := shared(lambda c: c["lr"]))
         else opt),
        shared(lambda c: _bare(c["sched"])),
        (("augmentation " + ("+".join(augs) or "none")) if (augs := shared(lambda c: list(map(_bare, c["augs"]))))
         is not None else None),
        shared(lambda c: _bare(c.get("trainer", ""))),
    ]
    return ", ".join(str(p) for p in parts if p)


def plot_runs(runs: list[dict[str, Any]], out: Path, title: str, x_axis: str = "epoch") -> None:
    """``accuracy.png`` (test accuracy) and ``loss.png`` (train and test loss, on one y scale), a line per
    run (the mean and a ±1 std band for several seeds), against epochs or wall time; the title says
    what the runs share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    def x_values(run: dict[str, Any], epochs: int) -> list[float]:
        if x_axis == "epoch":
            return [r["epoch"] for r in run["metrics"][:epochs]]
        return list(itertools.accumulate((r["seconds"] + r.get("eval_seconds", 0)) / 60 for r in run["metrics"][:epochs]))

    def draw(file: str, panels: list[tuple[str, str, Callable[[dict[str, Any]], float]]]) -> None:
        figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels) + 2, 5.5), dpi=100, squeeze=False,
                                    sharey=True)
        for axis, (name, ylabel, value) in zip(axes[0], panels):
            for group_name, group in grouped(runs):  # the same colour for a run in every panel
                epochs = min(len(run["metrics"]) for run in group)
                curves = [[value(r) for r in run["metrics"][:epochs]] for run in group]
                mean = [sum(points) / len(points) for points in zip(*curves)]
                x = [sum(points) / len(points) for points in zip(*(x_values(run, epochs) for run in group))]
                line, = axis.plot(x, mean, marker="o", markersize=3,
                                  label=group_name + (f" (mean of {len(group)} seeds, band: ±1 std)" if len(group) > 1
                                                      else ""))
                if len(group) > 1:
                    spread = [_std(list(points)) for points in zip(*curves)]
                    axis.fill_between(x, [m - d for m, d in zip(mean, spread)], [m + d for m, d in zip(mean, spread)],
                                      color=line.get_color(), alpha=0.2)
            axis.set(xlabel="epoch" if x_axis == "epoch" else "wall time (minutes, evaluation included)",
                     ylabel=ylabel, title=name)
            axis.yaxis.set_tick_params(labelleft=True)
            if x_axis == "epoch":
                axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=8)
        figure.suptitle(f"{title}\n{recipe(runs)}", fontsize=11)
        figure.tight_layout()
        figure.savefig(out / file)
        plt.close(figure)

    draw("accuracy.png", [("test accuracy", "test accuracy (%)", lambda r: 100 * r["test_accuracy"])])
    draw("loss.png", [("train loss", "loss", lambda r: r["train_loss"]), ("test loss", "loss", lambda r: r["test_loss"])])
