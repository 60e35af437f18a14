"""Run folders, comparison folders and outputs are untrusted like any file: a path read from a file is
never a place to write, zoo never writes through a link or over the user's own files, one process at
a time trains in a run folder, and a run that diverged says so."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import zoo
from zoo import RunConfig, UserError, train

from conftest import StopAtEpoch, run_zoo

TINY = ["--set", "layout=8,M,16,M", "--batch-size", "20", "--epochs", "1", "--aug", "none"]


def tiny(cifar_dir, **changes) -> RunConfig:
    base = dict(model="vgg_bn", data="cifar10", augs=[], epochs=2, batch_size=20, model_options={"layout": "8,M,16,M"},
                data_dir=str(cifar_dir))
    return RunConfig(**{**base, **changes})


@pytest.fixture
def interrupted(cifar_dir, tmp_path):
    """A run folder <tmp>/proj/runs/r, interrupted after its first epoch, with its config."""
    project = tmp_path / "proj"
    project.mkdir()
    with pytest.raises(KeyboardInterrupt):
        train(tiny(cifar_dir), run_dir=project / "runs" / "r", weights=project / "weights" / "r.safetensors",
              reporter=StopAtEpoch(1))
    return project / "runs" / "r"


def set_recorded_weights(run_dir, weights: str) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    config["weights"] = weights
    (run_dir / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("recorded", ["{site}/zoo-evil.pth", "../../../escaped.safetensors", "{site}/w.safetensors"])
def test_resume_never_writes_where_a_run_folder_says(interrupted, cifar_dir, tmp_path, recorded):
    site = tmp_path / "site-packages"
    site.mkdir()
    set_recorded_weights(interrupted, recorded.replace("{site}", str(site)))
    with pytest.raises(UserError, match="zoo takes no place to write from a file"):
        train(tiny(cifar_dir), resume=interrupted)
    assert list(site.iterdir()) == [] and not (tmp_path / "escaped.safetensors").exists()
    mine = tmp_path / "mine.safetensors"  # where the user says, it goes
    assert train(tiny(cifar_dir), resume=interrupted, weights=mine)["weights"] == str(mine)
    assert zoo.load_model(mine).zoo_meta["metrics"]["epoch"] == 2 and list(site.iterdir()) == []


def test_weights_go_only_to_zoo_s_suffix(cifar_dir, tmp_path):
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--out", "evil.pth", cwd=tmp_path)
    assert result.returncode == 2 and "only to .safetensors files, not evil.pth" in result.stderr, result.stderr
    assert list(tmp_path.glob("*.pth")) == [] and not (tmp_path / "runs").exists()


def test_resume_through_another_folder_or_a_link_is_the_same_run(interrupted, cifar_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "proj")
    weights = tmp_path / "proj" / "weights" / "r.safetensors"
    relative = run_zoo("train", "--resume", "../proj/runs/r", "--json", cwd=elsewhere)
    assert relative.returncode == 0, relative.stderr
    assert zoo.load_model(weights).zoo_meta["metrics"]["epoch"] == 2
    for path in ("../proj/runs/r", str(tmp_path / "link" / "runs" / "r")):  # the run is done: extend it
        extended = run_zoo("train", "--resume", path, "--epochs", "3" if "link" not in path else "4", cwd=elsewhere)
        assert extended.returncode == 0, extended.stderr
    assert zoo.load_model(weights).zoo_meta["metrics"]["epoch"] == 4
    assert list(elsewhere.iterdir()) == []


def test_a_run_folder_is_held_by_one_process_at_a_time(interrupted, cifar_dir):
    from zoo.training.runs import hold_run_dir

    held = hold_run_dir(interrupted)  # as a run still training holds it
    try:
        result = run_zoo("train", "--resume", str(interrupted))
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "is in use by another zoo process" in result.stderr
    finally:
        os.close(held)
    # Two resumes started together: one trains; the other is refused, or (if it came after) finds the
    # run finished. Never do both train in the folder, which would record epochs twice.
    resumes = [subprocess.Popen([sys.executable, "-m", "zoo", "train", "--resume", str(interrupted), "--epochs", "40"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in resumes)
    assert results[0][0] == 0 and results[1][0] in (0, 2), results
    assert results[1][0] == 0 or "in use by another zoo process" in results[1][1]
    records = (interrupted / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in records] == list(range(1, 41))


@pytest.mark.parametrize("logger, name", [("csv", "metrics.csv"), ("tensorboard", "tensorboard")])
def test_resume_never_writes_through_a_link_in_the_run_folder(interrupted, tmp_path, logger, name):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "victim.txt" if logger == "csv" else outside
    if logger == "csv":
        target.write_text("precious\n")
    (interrupted / name).symlink_to(target)
    result = run_zoo("train", "--resume", str(interrupted), "--log", logger)
    assert result.returncode == 2 and "is a link; zoo does not write through links" in result.stderr, result.stderr
    assert sorted(p.name for p in outside.iterdir()) == (["victim.txt"] if logger == "csv" else [])
    if logger == "csv":
        assert target.read_text() == "precious\n"


@pytest.mark.parametrize("flags", [["--lr", "1e30"], ["--wd", "1e30"], ["--lr", "1e30", "--epochs", "2"]])
def test_a_run_whose_evaluation_is_not_finite_diverged(cifar_dir, tmp_path, flags):
    # one step per epoch: its training loss was computed before the update that blew the weights up
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--batch-size", "100", *flags, "--out",
                     "w.safetensors", cwd=tmp_path)
    assert result.returncode == 2 and "infinite or NaN" in result.stderr, result.stderr
    assert not (tmp_path / "w.safetensors").exists()
    assert "no checkpoint was written yet" in result.stderr  # it diverged in its first epoch: none is good


def test_compare_never_replaces_the_user_s_report_or_writes_through_links(cifar_dir, tmp_path):
    experiment = tmp_path / "e.toml"
    experiment.write_text('name = "e"\n[base]\nmodel = "vgg_bn"\nepochs = 1\nbatch_size = 20\naugs = []\n'
                          'model_options = {layout = "8,M"}\n[grid]\nlr = [0.1]\n')
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.md").write_text("my own results\n")
    refused = run_zoo("compare", str(experiment), "--data-dir", str(cifar_dir), "--out", str(mine), cwd=tmp_path)
    assert refused.returncode == 2 and "holds a report zoo compare did not write" in refused.stderr, refused.stderr
    assert (mine / "results.md").read_text() == "my own results\n" and sorted(os.listdir(mine)) == ["results.md"]
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "results.csv").symlink_to(tmp_path / "nowhere.csv")  # dangling
    assert run_zoo("compare", str(experiment), "--data-dir", str(cifar_dir), "--out", str(linked),
                   cwd=tmp_path).returncode == 2
    out = tmp_path / "out"
    first = run_zoo("compare", str(experiment), "--data-dir", str(cifar_dir), "--out", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = run_zoo("compare", str(experiment), "--data-dir", str(cifar_dir), "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0 and "finished before, skipped" in again.stderr, again.stderr
    report = tmp_path / "report"
    report.mkdir()
    (report / "results.md").symlink_to(tmp_path / "through-the-link.md")
    result = run_zoo("report", str(out / "runs" / "0.1"), "--out", str(report), cwd=tmp_path)
    assert result.returncode == 2 and "already holds a report" in result.stderr, result.stderr
    assert not (tmp_path / "through-the-link.md").exists() and not (tmp_path / "nowhere.csv").exists()
    forced = run_zoo("report", str(out / "runs" / "0.1"), "--out", str(report), "--overwrite", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert not (tmp_path / "through-the-link.md").exists() and not (report / "results.md").is_symlink()


def test_export_never_replaces_its_input_nor_a_file_that_appears_meanwhile(tmp_path):
    from zoo import Exporter, hookimpl
    from zoo.testing import fresh_registry

    model = zoo.create_model("resnet", num_classes=10, layers=[1, 1, 1], base_channels=4)
    weights = zoo.save_weights(model, tmp_path / "w.safetensors", classes=[str(i) for i in range(10)],
                               num_classes=10, in_chans=3, input_size=32)
    before = weights.read_bytes()
    result = run_zoo("export", str(weights), "--out", str(weights), "--overwrite", cwd=tmp_path)
    assert result.returncode == 2 and "is the weights being exported" in result.stderr, result.stderr
    assert weights.read_bytes() == before

    class Racing:
        """An exporter during whose write the user's file appears at the output's name."""

        @staticmethod
        @hookimpl
        def exporters():
            def save(model, example, path, dynamic_batch=False, metadata=None):
                (tmp_path / "w.bin").write_text("the user's")
                path.write_bytes(b"x")

            def load(path):
                return (lambda x: model(x).detach()), metadata_of[0]

            return [Exporter("racing", save, "writes slowly", suffix=".bin", runner=load)]

    import torch

    registry = fresh_registry({"racing": Racing()}, installed=("resnet",))
    metadata_of = [None]
    from zoo.io import export as export_module

    meta = zoo.load_model(weights).zoo_meta
    metadata_of[0] = {"zoo": json.dumps({k: meta[k] for k in export_module.CARRIED if k in meta}
                                        | {"weights": weights.name})}
    model = zoo.load_model(weights).eval()
    with torch.no_grad(), pytest.raises(UserError, match="appeared while exporting and is left as it is"):
        export_module.export_weights(weights, "racing", registry=registry)
    assert (tmp_path / "w.bin").read_text() == "the user's"
