"""Comparisons: a grid of runs, a table and plots, and resuming an interrupted comparison."""
from __future__ import annotations

import csv
import json
import os
import statistics
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import zoo
from zoo.base.errors import UserError
from zoo.apps.compare import Experiment, run_experiment

from conftest import ROOT, StopAtEpoch, run_zoo

TINY = {"model": "vgg_bn", "data": "cifar10", "epochs": 2, "batch_size": 20, "warmup": 0,
        "model_options": {"layout": "8,M,16,M"}, "augs": []}


def write_experiment(path: Path, data_dir: Path) -> Path:
    path.write_text(f"""
name = "tiny"
[base]
model = "vgg_bn"
data = "cifar10"
data_dir = "{data_dir}"
epochs = 1
batch_size = 20
warmup = 0
model_options = {{ layout = "8,M,16,M" }}
[grid]
augs = [[], ["crop=2", "hflip"]]
lr = [0.01, 0.05]
""")
    return path


def test_a_grid_gives_one_row_per_run_and_plots(cifar_dir, tmp_path):
    experiment = write_experiment(tmp_path / "tiny.toml", cifar_dir)
    result = run_zoo("compare", str(experiment), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [r["run"] for r in rows] == ["none-0.01", "none-0.05", "crop=2+hflip-0.01", "crop=2+hflip-0.05"]
    assert {r["augmentation"] for r in rows} == {"none", "crop(padding=2)+hflip"} and rows[1]["lr"] == "0.05"
    assert all(r["epochs"] == r["planned epochs"] == "1" and 0 <= float(r["test accuracy"]) <= 1
               and int(r["parameters"]) > 0 and r["dataset"] == "cifar10" for r in rows)
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert markdown.count("\n| none-0.0") == 2 and "| dataset | network | epochs | planned epochs | batch size | lr | optimizer |" in markdown
    for name in ("accuracy.png", "loss.png"):
        with Image.open(tmp_path / "out" / name) as image:
            assert image.format == "PNG" and image.size[0] >= 800
    # finished runs keep what a report and an evaluation need, not the optimizer's state, and say so
    for run in (tmp_path / "out" / "runs").iterdir():
        assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.jsonl"]
    assert "no checkpoint: extend one with zoo train --init WEIGHTS" in result.stdout
    resumed = run_zoo("train", "--resume", str(tmp_path / "out" / "runs" / "none-0.01"), "--epochs", "2", cwd=tmp_path)
    assert resumed.returncode == 2 and "has trained epochs but no checkpoint" in resumed.stderr

    report = run_zoo("report", *(str(p) for p in sorted((tmp_path / "out" / "runs").iterdir())[:2]),
                     "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert len(list(csv.DictReader((tmp_path / "report" / "results.csv").open()))) == 2
    assert (tmp_path / "report" / "accuracy.png").stat().st_size > 1000


def test_an_interrupted_comparison_resumes_without_repeating_finished_runs(cifar_dir, tmp_path):
    experiment = Experiment("resume", {**TINY, "data_dir": str(cifar_dir)}, {"lr": [0.01, 0.02, 0.03]})
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(experiment, out, reporter_factory=lambda slug: StopAtEpoch(1) if slug == "0.02" else None)
    first = (out / "weights" / "0.01.safetensors").read_bytes()
    half = (out / "runs" / "0.02" / "metrics.jsonl").read_text()
    assert not (out / "weights" / "0.02.safetensors").exists() and not (out / "runs" / "0.03").exists()

    skipped = []
    rows, _ = run_experiment(experiment, out, on_skip=skipped.append)
    assert skipped == ["0.01"] and len(rows) == 3
    assert (out / "weights" / "0.01.safetensors").read_bytes() == first
    metrics = (out / "runs" / "0.02" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 2 and metrics[0] == half.splitlines()[0]  # epoch 1 was not trained again
    assert run_experiment(experiment, out, on_skip=skipped.append) and skipped == ["0.01", "0.01", "0.02", "0.03"]


def test_the_labs_presets_describe_the_labs_settings():
    expected = {"networks": 5, "augmentations": 4, "optimizers": 4, "batch-sizes": 3}
    for name, count in expected.items():
        experiment = Experiment.from_toml(ROOT / "experiments" / f"{name}.toml")
        runs = experiment.runs()
        assert len(runs) == count
        for _, _, config in runs:
            assert config.epochs == 50 and config.data == "cifar10"
            assert config.batch_size in (32, 128, 256)
        quick = experiment.runs(quick=True)
        assert all(c.epochs == 4 and c.data == "fashion-mnist-sample" and c.model_options["width"] == 0.25
                   and c.train_limit is None for _, _, c in quick)  # the embedded sample: runs offline
    networks = Experiment.from_toml(ROOT / "experiments" / "networks.toml").runs()
    assert {(c.sched, json.dumps(c.sched_options)) for _, _, c in networks} == {
        ("multistep", '{"milestones": [0.4, 0.6, 0.8]}')} and networks[0][2].lr == 0.005
    placements = [c.model_options.get("se", {}).get("placement") for _, _, c in networks]
    assert placements == [None, None, "conv", "stage", None]


@pytest.mark.parametrize("text, message", [
    ("name = 'x'\n[bsae]\nlr = 1", "unknown sections bsae"),
    ("[base]\nlearning_rate = 1", "unknown option learning_rate in base"),
    ("[grid]\nmodel = 'vgg16'", "grid axis 'model' must be a non-empty list"),
    ("[grid]\nflavour = ['a']", "grid axis 'flavour' is not a run option"),
    ("[grid\nmodel = 1", "is not valid TOML"),
])
def test_bad_experiment_files_give_one_clean_line(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    result = run_zoo("compare", str(tmp_path / "bad.toml"), cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 500), st.floats(allow_nan=True),
                                st.text(max_size=12)),
                      lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner,
                                                                                           max_size=3)), max_leaves=8)
KEYS = st.one_of(st.sampled_from(["model", "lr", "epochs", "augs", "opt", "sched", "batch_size", "label",
                                  "model_options", "seed"]), st.text(max_size=8))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_experiment_text_parses_or_fails_cleanly(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("exp") / "e.toml"
    path.write_bytes(text.encode("utf-8", "replace"))
    try:
        Experiment.from_toml(path)
    except UserError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=4), st.dictionaries(KEYS, VALUES, max_size=3))
def test_any_experiment_structure_expands_and_resolves_or_fails_cleanly(base, grid):
    from zoo.training.config import Run

    try:
        for _, _, config in Experiment("fuzz", base, grid).runs():
            Run.resolve(config)
    except UserError:
        pass


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "experiments").glob("*.toml")))
def test_every_preset_checks_out_without_training(preset):
    from zoo.apps.compare import checked_runs

    experiment = Experiment.from_toml(ROOT / "experiments" / preset)
    for quick in (False, True):  # what zoo compare --dry-run checks: every name and option of every run
        assert checked_runs(experiment, quick)


def test_seeds_run_every_grid_point_again_and_the_table_gives_mean_and_spread(cifar_dir, tmp_path):
    experiment = tmp_path / "seeds.toml"
    experiment.write_text(f"""
seeds = 3
[base]
model = "vgg_bn"
data_dir = "{cifar_dir}"
epochs = 1
batch_size = 20
model_options = {{ layout = "8,M,16,M" }}
[grid]
augs = [[], ["hflip"]]
""")
    result = run_zoo("compare", str(experiment), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = sorted(p.name for p in (tmp_path / "out" / "runs").iterdir())
    assert runs == [f"{a}-seed{k}" for a in ("hflip", "none") for k in range(3)]
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [(r["run"], r["seeds"]) for r in rows] == [("none", "3"), ("hflip", "3")]
    finals = [json.loads((tmp_path / "out" / "runs" / f"none-seed{k}" / "metrics.jsonl").read_text()
                         .splitlines()[-1])["test_accuracy"] for k in range(3)]
    assert float(rows[0]["test accuracy"]) == pytest.approx(statistics.mean(finals))
    assert float(rows[0]["test accuracy std"]) == pytest.approx(statistics.stdev(finals))
    assert " ± " in (tmp_path / "out" / "results.md").read_text()
    seeds = {json.loads((tmp_path / "out" / "runs" / f"none-seed{k}" / "config.json").read_text())["seed"]
             for k in range(3)}
    assert seeds == {0, 1, 2}
    listed = run_zoo("compare", str(experiment), "--seeds", "2", "--dry-run", cwd=tmp_path)
    assert [line.split(":")[0] for line in listed.stdout.splitlines()] == ["none-seed0", "none-seed1", "hflip-seed0",
                                                                           "hflip-seed1"]
    # without a baseline, seeded rows are compared with the best, and a gap under the spread is marked
    rows = {r["run"]: r for r in rows}
    best, other = sorted(rows, key=lambda name: float(rows[name]["test accuracy"]), reverse=True)
    gap = float(rows[other]["test accuracy"]) - float(rows[best]["test accuracy"])
    spread = (float(rows[other]["test accuracy std"]) ** 2 + float(rows[best]["test accuracy std"]) ** 2) ** 0.5
    assert float(rows[other]["vs baseline"]) == pytest.approx(gap) and float(rows[best]["vs baseline"]) == 0
    assert rows[other]["within spread"] == (str(abs(gap) < spread) if spread else "")  # no spread: nothing to say
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert f"| {best} |" in markdown and "| baseline |" in markdown and f"{100 * gap:+.2f} pts" in markdown
    assert "vgg_bn" not in markdown.splitlines()[2] and "1 epochs, batch 20, sgd-nesterov lr 0.05, cosine" in markdown


@pytest.mark.parametrize("baseline, first, difference", [
    ("lab VGG16=87.5%", "lab VGG16", lambda accuracy: accuracy - 0.875),
    ("lab=0.5", "lab", lambda accuracy: accuracy - 0.5),
])
def test_report_compares_every_row_with_a_baseline_number_or_run(cifar_dir, tmp_path, baseline, first, difference):
    runs = []
    for lr in ("0.01", "0.05"):
        result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), "--set", "layout=8,M,16,M", "--epochs", "1",
                         "--batch-size", "20", "--aug", "none", "--lr", lr, "--run-dir", f"runs/{lr}", "--out",
                         f"{lr}.safetensors", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        runs.append(f"runs/{lr}")
    for chosen, expected_first in ((baseline, first), ("runs/0.05", "0.01")):
        out = tmp_path / f"report-{expected_first}"
        result = run_zoo("report", *([runs[0]] if chosen == "runs/0.05" else runs), "--baseline", chosen, "--x-axis",
                         "time", "--out", str(out), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        rows = list(csv.DictReader((out / "results.csv").open()))
        if chosen == "runs/0.05":  # a run folder not among the runs becomes the first row
            assert [r["run"] for r in rows] == ["0.05", "0.01"]
            assert float(rows[1]["vs baseline"]) == pytest.approx(float(rows[1]["test accuracy"])
                                                                  - float(rows[0]["test accuracy"]))
        else:
            assert rows[0]["run"] == first and rows[0]["network"] == ""
            assert [float(r["vs baseline"]) for r in rows[1:]] == [
                pytest.approx(difference(float(r["test accuracy"]))) for r in rows[1:]]
        assert (out / "loss.png").stat().st_size > 1000
    for bad in ("lab=187", "nothing-here"):
        result = run_zoo("report", *runs, "--baseline", bad, "--out", str(tmp_path / "bad"), cwd=tmp_path)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert "baseline" in result.stderr and not (tmp_path / "bad").exists()


def test_plots_say_what_the_runs_share_and_share_one_y_scale(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from zoo.apps.report import plot_runs

    def run(name, lr, losses):
        metrics = [{"epoch": i + 1, "train_loss": loss, "test_loss": loss / 2, "test_accuracy": 0.5, "seconds": 30,
                    "eval_seconds": 6} for i, loss in enumerate(losses)]
        config = {"data": "datasets:cifar10", "epochs": len(losses), "batch_size": 128, "opt": "optim:adam", "lr": lr,
                  "sched": "optim:cosine", "augs": ["augment:hflip"], "trainer": "zoo:fp32"}
        return {"name": name, "config": config, "metrics": metrics, "parameters": 1, "finished": True}

    drawn = {}
    save = Figure.savefig

    def record(figure, path, *args, **kwargs):  # what each figure shows, read as it is saved
        name = Path(path).name  # written to a temporary .NAME.XXXX.tmp, then renamed
        drawn[name[1:].rsplit(".", 2)[0] if name.startswith(".") else name] = ([axis.get_ylim() for axis in figure.axes], figure._suptitle.get_text(),
                                  [axis.get_xlabel() for axis in figure.axes], [list(line.get_xdata()) for line in
                                                                                 figure.axes[0].get_lines()])
        return save(figure, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    runs = [run("a", 0.1, [2.0, 1.0]), run("b", 0.01, [9.0, 8.0])]
    plot_runs(runs, tmp_path, "lrs", x_axis="time")
    limits, title, xlabels, xs = drawn["loss.png"]
    assert limits[0] == limits[1]  # train and test loss on one scale
    assert title == "lrs\ncifar10, 2 epochs, batch 128, adam, cosine, augmentation hflip, fp32"
    assert xlabels[0].startswith("wall time (minutes") and xs[0] == [0.6, 1.2]  # (30 + 6) s per epoch
    assert (tmp_path / "accuracy.png").stat().st_size > 1000


def test_a_one_epoch_comparison_of_seeds_shows_each_seed_its_spread_and_the_baseline(tmp_path, monkeypatch):
    """A 1-epoch comparison once drew fractional epoch ticks, one point for all seeds and a band of no
    width; the baseline was on no plot, and the subtitle did not say the runs trained on a subset."""
    from matplotlib.figure import Figure

    from zoo.apps.report import plot_runs

    def run(name, accuracy):
        config = {"data": "datasets:fashion-mnist-sample", "epochs": 1, "batch_size": 128, "opt": "optim:adam",
                  "lr": 0.01, "sched": "optim:cosine", "augs": [], "trainer": "zoo:amp", "train_limit": 500}
        return {"name": name, "config": config, "parameters": 1, "finished": True,
                "metrics": [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.0, "test_accuracy": accuracy,
                             "seconds": 30, "eval_seconds": 6}]}

    figures = {}
    save = Figure.savefig

    def keep(figure, path, *args, **kwargs):  # each figure as it is saved (to a temporary .NAME.XXXX.tmp)
        name = Path(path).name
        figures[name[1:].rsplit(".", 2)[0] if name.startswith(".") else name] = figure
        return save(figure, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    runs = [run("a-seed0", 0.5), run("a-seed1", 0.6), run("b-seed0", 0.7), run("b-seed1", 0.9)]
    for x_axis in ("epoch", "time"):
        plot_runs(runs, tmp_path, "seeds", x_axis=x_axis, baseline=("lab", 0.875))
        axis = figures["accuracy.png"].axes[0]
        assert [line.get_label() for line in axis.get_lines()][-1] == "baseline: lab"
        assert axis.get_lines()[-1].get_ydata()[0] == 87.5
        seeds = [c.get_offsets() for c in axis.collections if type(c).__name__ == "PathCollection"]
        assert sorted(float(o[0][1]) for o in seeds) == [50.0, 60.0, 70.0, 90.0]  # every seed's point
        assert len(axis.containers) == 2  # an error bar per group: a band needs two points
        if x_axis == "epoch":
            assert all(float(t).is_integer() for t in axis.get_xticks())
    assert "subsets of 500 training images" in figures["accuracy.png"]._suptitle.get_text()


def _run_folder(root: Path, config_changes=None, metrics_text=None) -> Path:
    """A run folder as zoo train leaves it, without training: its config.json and metrics.jsonl."""
    folder = root / "runs" / "r"
    folder.mkdir(parents=True)
    config = {**asdict(zoo.RunConfig(model="resnet20", data="datasets:cifar10", augs=["augment:crop", "augment:hflip"],
                                     aug_options={"augment:crop": {"padding": 2}}, opt="optim:adam", lr=0.001,
                                     sched="optim:multistep", sched_options={"milestones": [1]}, epochs=2)),
              "weights": str(root / "w.safetensors"), **(config_changes or {})}
    (folder / "config.json").write_text(json.dumps(config))
    record = {"epoch": 1, "train_loss": float("nan"), "train_accuracy": 0.1, "test_loss": 2.0, "test_accuracy": 0.5,
              "lr": 0.001, "seconds": 3.0, "images_per_s": 100.0}
    (folder / "metrics.jsonl").write_text(json.dumps(record) + "\n" if metrics_text is None else metrics_text)
    return folder


def test_a_report_names_choices_with_their_options_as_recorded_then_and_now(tmp_path):
    folder = _run_folder(tmp_path)  # a diverged loss (NaN) is a number too
    result = run_zoo("report", str(folder), "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    row = next(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert (row["optimizer"], row["schedule"], row["augmentation"]) == (
        "adam", "multistep(milestones=[1]) (warmup 1)", "crop(padding=2)+hflip")
    older = _run_folder(tmp_path / "older", {"augs": ["crop=4"], "aug_options": {}, "sched": "multistep=[1]",
                                             "sched_options": {}})  # the shorthand, as older zoo recorded it
    result = run_zoo("report", str(older), "--out", "out2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    row = next(csv.DictReader((tmp_path / "out2" / "results.csv").open()))
    assert (row["schedule"], row["augmentation"]) == ("multistep=[1] (warmup 1)", "crop=4")


@pytest.mark.parametrize("config, metrics, message", [
    ({"opt": None}, None, "is not what a run records (no opt)"),
    ({"augs": "crop"}, None, "option augs must be list[str] | None"),
    ({"weights": 3}, None, "no weights path"),
    ({"wings": 2}, None, "unknown option wings"),
    (None, '{"epoch": "1"}\n', "line 1 is not an epoch's metrics"),
    (None, "[" * 100_000 + "\n", "line 1 is not an epoch's metrics"),
    (None, "fifo", "metrics file"),
])
def test_a_run_folder_that_is_not_a_runs_is_one_clear_error(tmp_path, config, metrics, message):
    folder = _run_folder(tmp_path, config, None if metrics == "fifo" else metrics)
    if metrics == "fifo":  # would block a reader forever
        (folder / "metrics.jsonl").unlink()
        os.mkfifo(folder / "metrics.jsonl")
    result = run_zoo("report", str(folder), "--out", "out", cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is not a run folder zoo can report" in result.stderr and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_grid_layers_choices_over_its_base_keeping_the_options_of_what_it_keeps(tmp_path):
    path = tmp_path / "layers.toml"
    path.write_text('''
[base]
model = "resnet20"
augs = ["crop", "hflip"]
aug_options = { crop = { padding = 2 } }
sched = "multistep"
sched_options = { milestones = [0.5], gamma = 0.5 }

[grid]
augs = [["hflip"], ["crop", "hflip"], ["crop=3"]]
sched = ["multistep", "multistep=[0.25]", "cosine"]
''')
    runs = {slug: config for slug, _, config in Experiment.from_toml(path).runs()}
    assert runs["hflip-multistep"].aug_options == {}  # crop dropped, and its options with it
    assert runs["crop+hflip-multistep"].aug_options == {"crop": {"padding": 2}}  # crop kept, with its padding
    assert runs["crop=3-multistep"].aug_options == {"crop": {"padding": 3}}
    assert runs["hflip-multistep"].sched_options == {"milestones": [0.5], "gamma": 0.5}  # named again: kept
    assert runs["hflip-multistep=_0.25"].sched_options == {"milestones": [0.25], "gamma": 0.5}
    assert runs["hflip-cosine"].sched_options == {}  # another schedule starts from its own defaults
    for text, message in [('[base]\naug_options = 5\n[grid]\nlr = [0.1]\n', "option aug_options must be"),
                          ('[base]\naug_options = { crop = 5 }\n[grid]\naugs = [["crop"]]\n', "aug_options must be"),
                          ('[grid]\naugs = [["crop"], [["x"]]]\n', "option augs must be list")]:
        (tmp_path / "bad.toml").write_text(text)
        with pytest.raises(UserError, match=message):
            Experiment.from_toml(tmp_path / "bad.toml")


def test_an_experiment_file_too_large_or_not_a_file_is_refused_before_it_is_read(tmp_path):
    (tmp_path / "huge.toml").write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(UserError, match=r"larger than an experiment file could be \(1 MB\)"):
        Experiment.from_toml(tmp_path / "huge.toml")
    os.mkfifo(tmp_path / "pipe.toml")  # would block a reader forever
    with pytest.raises(UserError, match="is not a regular file"):
        Experiment.from_toml(tmp_path / "pipe.toml")


def test_the_command_lines_settings_win_over_the_experiments_quick_section(tmp_path):
    """--quick once silently replaced --data and --epochs with its own; they are the user's last word."""
    listed = run_zoo("compare", str(ROOT / "experiments" / "networks.toml"), "--quick", "--data", "fashion-mnist-sample",
                     "--epochs", "1", "--limit-train", "500", "--limit-test", "100", "--dry-run", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 5 and all("on fashion-mnist-sample (500 training images), 1 epoch, adam" in line
                                   for line in lines), lines
    experiment = Experiment.from_toml(ROOT / "experiments" / "networks.toml")
    experiment.settings = {"test_limit": 100}
    assert {c.test_limit for _, _, c in experiment.runs(quick=True)} == {100}
    assert {c.model_options["width"] for _, _, c in experiment.runs(quick=True)} == {0.25}  # the rest of quick holds


def test_a_dry_run_loads_each_dataset_once_as_the_runs_would_but_never_downloads(tmp_path):
    experiment = tmp_path / "e.toml"
    experiment.write_text('[base]\nmodel = "resnet20"\ndata = "cifar10"\nepochs = 1\n[grid]\nlr = [0.1, 0.2]\n')
    empty = tmp_path / "empty"
    listed = run_zoo("compare", str(experiment), "--data-dir", str(empty), "--dry-run", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.count("the run will try to download it") == 1 and not empty.exists()  # said once, fetched never
    offline = tmp_path / "offline.toml"
    offline.write_text(experiment.read_text().replace("epochs = 1", "epochs = 1\ndownload = false"))
    refused = run_zoo("compare", str(offline), "--data-dir", str(empty), "--dry-run", cwd=tmp_path)
    assert refused.returncode == 2 and "run 0.1: cifar10" in refused.stderr and "fashion-mnist-sample" in refused.stderr
    too_few = run_zoo("compare", str(experiment), "--data", "fashion-mnist-sample", "--limit-train", "50", "--dry-run",
                      cwd=tmp_path)
    assert too_few.returncode == 2 and "batch size 128 is larger than the 50" in too_few.stderr


def test_a_quick_comparison_runs_offline_on_the_embedded_sample(tmp_path):
    """--quick works wherever the README's first command does: no dataset to install or download."""
    empty = tmp_path / "no-data"
    result = run_zoo("compare", str(ROOT / "experiments" / "augmentations.toml"), "--quick", "--epochs", "1",
                     "--limit-train", "512", "--limit-test", "256", "--data-dir", str(empty), "--out", "out",
                     cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert len(rows) == 4 and all(0 < float(row["test accuracy"]) <= 1 for row in rows)
    assert not empty.exists()  # nothing was fetched
