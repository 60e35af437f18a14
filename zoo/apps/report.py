"""Reports of finished runs: a Markdown/CSV table (mean ± std over seeds, each row against a
baseline) and PNG plots, for ``zoo compare`` and ``zoo report``."""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from ..training.config import RunConfig, check_config_types
from ..base.errors import UserError
from ..base.files import atomic_write, atomic_write_text, read_bounded
from ..base.text import counted
from ..io.weights import read_metadata
from ..registry.specs import split_qualified

REPORT_FILES = ("results.md", "results.csv", "accuracy.png", "loss.png")
COLUMNS = ["run", "dataset", "network", "epochs", "planned epochs", "batch size", "lr", "optimizer", "schedule",
           "augmentation", "seeds", "test accuracy", "test accuracy std", "vs baseline", "within spread",
           "best test accuracy", "time (s)", "images/s", "parameters"]
X_AXES = ("epoch", "time")
SEED_SUFFIX = re.compile(r"-seed\d+$")  # runs of one grid point with other seeds: x-seed0, x-seed1, ...


def load_run(run_dir: Path) -> dict[str, Any]:
    """A run folder's config, metrics and parameter count, for reports. Run folders travel between
    people: one that is not a run's is one clear error."""
    try:
        config = _run_config(run_dir / "config.json")
        metrics = _metrics(run_dir / "metrics.jsonl")
    except (UserError, OSError) as exc:
        raise UserError(f"{run_dir} is not a run folder zoo can report ({exc})") from None
    saved = Path(config.get("weights", ""))
    weights = next((p for p in (saved, run_dir.parent.parent / "weights" / saved.name) if p.is_file()), None)
    parameters = read_metadata(weights).parameters if weights else None
    return {"name": run_dir.name, "config": config, "metrics": metrics, "parameters": parameters,
            "finished": weights is not None}


def _run_config(path: Path) -> dict[str, Any]:
    """The config a run recorded: every field of the right type, its choices resolved to names."""
    document = RunConfig.read_file(path)
    config = RunConfig(**{k: v for k, v in document.items() if k not in RunConfig.RECORDED})
    check_config_types(config)
    unresolved = [name for name in ("data", "augs", "opt", "sched", "lr") if getattr(config, name) is None]
    if unresolved or not isinstance(document.get("weights", ""), str):
        raise UserError(f"{path} is not what a run records (no {', '.join(unresolved) or 'weights path'})")
    return {**document, **asdict(config)}


_METRICS = ("epoch", "train_loss", "test_loss", "test_accuracy", "seconds", "images_per_s")


def _metrics(path: Path) -> list[dict[str, Any]]:
    """A run's metrics.jsonl: one record of numbers per epoch (a diverged run's loss is NaN)."""
    records = []
    for number, line in enumerate(read_bounded(path, "metrics", 64 << 20, "a run's metrics").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if not (isinstance(record, dict) and all(type(record.get(key)) in (int, float) for key in _METRICS)
                and type(record.get("eval_seconds", 0)) in (int, float)):
            raise UserError(f"{path}: line {number} is not an epoch's metrics")
        records.append(record)
    return records


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
            "run": name, "dataset": split_qualified(str(c.get("data", "")))[1],
            "network": c["model"] + (f" ({options})" if options else ""),
            "epochs": len(m), "planned epochs": c["epochs"], "batch size": c["batch_size"], "lr": c["lr"],
            "optimizer": _choice(c["opt"], c.get("opt_options")),
            "schedule": _choice(c["sched"], c.get("sched_options"))
            + (f" (warmup {c['warmup']:g})" if c.get("warmup") else ""),
            "augmentation": "+".join(_augmentations(c)) or "none", "seeds": len(group),
            "test accuracy": _mean(finals),
            "test accuracy std": _std(finals) if len(finals) > 1 else None,
            "best test accuracy": _mean([max(r["test_accuracy"] for r in run["metrics"]) for run in group
                                         if run["metrics"]]),
            "time (s)": round(_mean([sum(r["seconds"] for r in run["metrics"]) for run in group]), 1),
            "images/s": round(sum(r["images_per_s"] for r in m) / len(m)) if m else None,
            "parameters": group[0]["parameters"],
        })
    return rows


def _choice(recorded: str, options: dict[str, Any] | None = None) -> str:
    """``optim:multistep`` with ``{"milestones": [20, 30]}`` -> ``multistep(milestones=[20, 30])``: tables
    say what was chosen, not which plugin gave it. (Older run folders hold the shorthand, ``multistep=[20,30]``.)"""
    name, sep, value = recorded.partition("=")
    given = f"({', '.join(f'{key}={setting}' for key, setting in options.items())})" if options else ""
    return split_qualified(name)[1] + sep + value + given


def _augmentations(config: dict[str, Any]) -> list[str]:
    options = {split_qualified(name)[1]: these for name, these in config.get("aug_options", {}).items()}
    return [_choice(name, options.get(split_qualified(name)[1])) for name in config["augs"]]


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
    # each file written beside and renamed in place: a link at its name is replaced, never written through
    atomic_write_text(out / "results.md", f"# {title}\n\n{recipe(runs)}\n\n" + markdown_table(rows, named) + note +
                      "\n![test accuracy](accuracy.png)\n\n![loss](loss.png)\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    reference = next(((named, row["test accuracy"] - row["vs baseline"]) for row in rows
                      if named and row.get("vs baseline") is not None), None)
    plot_runs(runs, out, title, x_axis, reference)
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


def describe_run(config: dict[str, Any]) -> str:
    """One line of what a run's config.json says it trains, and how."""
    subset = f" ({counted(config['train_limit'], 'training image')})" if config.get("train_limit") else ""
    return (f"{config['model']} on {_choice(config['data'])}{subset}, {counted(config['epochs'], 'epoch')}, "
            f"{_choice(config['opt'], config.get('opt_options'))} lr {config['lr']:g}, "
            f"{_choice(config['sched'], config.get('sched_options'))}, batch {config['batch_size']}, "
            f"augs {'+'.join(_augmentations(config)) or 'none'}")


def recipe(runs: list[dict[str, Any]]) -> str:
    """What every run shares, in words (the data, epochs, optimizer, ...); what differs is in the rows."""
    def shared(value: Callable[[dict[str, Any]], Any]) -> Any:
        values = {json.dumps(value(run["config"]), sort_keys=True) for run in runs}
        return value(runs[0]["config"]) if len(values) == 1 else None

    parts = [
        shared(lambda c: split_qualified(str(c.get("data", "")))[1]),
        (f"{epochs} epochs" if (epochs := shared(lambda c: c["epochs"])) else None),
        (f"batch {batch}" if (batch := shared(lambda c: c["batch_size"])) else None),
        (f"{opt} lr {lr:g}" if (opt := shared(lambda c: _choice(c["opt"], c.get("opt_options"))))
         and (lr := shared(lambda c: c["lr"])) else opt),
        shared(lambda c: _choice(c["sched"], c.get("sched_options"))),
        (("augmentation " + ("+".join(augs) or "none")) if (augs := shared(_augmentations)) is not None else None),
        shared(lambda c: _choice(c.get("trainer", ""))),
        (f"subsets of {counted(n, 'training image')}" if (n := shared(lambda c: c.get("train_limit"))) else None),
    ]
    return ", ".join(str(p) for p in parts if p)


def plot_runs(runs: list[dict[str, Any]], out: Path, title: str, x_axis: str = "epoch",
              baseline: tuple[str, float] | None = None) -> None:
    """``accuracy.png`` (test accuracy, and the ``baseline``'s (name, accuracy) as a dashed line) and
    ``loss.png`` (train and test loss, on one y scale), a line per run (for several seeds their mean,
    each seed's points and a ±1 std band, an error bar where there is one point), against epochs or
    wall time; the title says what the runs share."""
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
                    _draw_spread(axis, x, mean, curves, [x_values(run, epochs) for run in group], line.get_color())
            axis.set(xlabel="epoch" if x_axis == "epoch" else "wall time (minutes, evaluation included)",
                     ylabel=ylabel, title=name)
            axis.yaxis.set_tick_params(labelleft=True)
            if x_axis == "epoch":
                axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # 1 epoch: the tick 1
            axis.grid(alpha=0.3)
            if baseline is not None and name == "test accuracy":
                axis.axhline(100 * baseline[1], color="grey", linestyle="--", label=f"baseline: {baseline[0]}")
        axes[0][-1].legend(fontsize=8)
        figure.suptitle(f"{title}\n{recipe(runs)}", fontsize=11)
        figure.tight_layout()
        atomic_write(out / file, lambda tmp: figure.savefig(tmp, format="png"))
        plt.close(figure)

    draw("accuracy.png", [("test accuracy", "test accuracy (%)", lambda r: 100 * r["test_accuracy"])])
    draw("loss.png", [("train loss", "loss", lambda r: r["train_loss"]), ("test loss", "loss", lambda r: r["test_loss"])])


def _draw_spread(axis, x: list[float], mean: list[float], curves: list[list[float]], xs: list[list[float]],
                 colour: str) -> None:
    """Several seeds around their mean: each seed's points, and a ±1 std band (an error bar where the
    runs have one point, as a 1-epoch comparison does: a band there has no width)."""
    spread = [_std(list(points)) for points in zip(*curves)]
    for seed_x, curve in zip(xs, curves):
        axis.scatter(seed_x, curve, color=colour, s=9, alpha=0.45, linewidths=0)
    if len(x) == 1:
        axis.errorbar(x, mean, yerr=spread, color=colour, capsize=5, linewidth=1.5)
    else:
        axis.fill_between(x, [m - d for m, d in zip(mean, spread)], [m + d for m, d in zip(mean, spread)],
                          color=colour, alpha=0.2)
