"""No run loses or mixes data: an overwritten run starts empty, concurrent runs never share a folder or
a weights file, a diverged run writes nothing non-finite, a resumed run writes where it first wrote,
checkpoints are checked like any file, and experiment names stay inside their folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.base.errors import UserError
from zoo import RunConfig, train

from conftest import ROOT, StopAtEpoch, rewrite_metadata, run_zoo

TINY = ["--set", "layout=8,M,16,M", "--batch-size", "20", "--epochs", "1", "--aug", "none"]


def tiny(cifar_dir, **changes) -> RunConfig:
    base = dict(model="vgg_bn", data="cifar10", augs=[], epochs=2, batch_size=20, model_options={"layout": "8,M,16,M"},
                data_dir=str(cifar_dir))
    return RunConfig(**{**base, **changes})


def test_an_overwritten_run_never_resumes_the_old_one(cifar_dir, tmp_path):
    old = tiny(cifar_dir, epochs=2)
    train(old, run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors")
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()
    with pytest.raises(KeyboardInterrupt):  # the new run is killed before its first checkpoint
        train(tiny(cifar_dir, epochs=3, seed=5), run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors",
              overwrite=True, reporter=StopAtEpoch(0))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "metrics.jsonl"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 5
    summary = train(tiny(cifar_dir, epochs=3, seed=5), resume=tmp_path / "run", weights=tmp_path / "w.safetensors")
    assert len([line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]) == 3
    assert summary["epochs"] == 3


def test_overwrite_refuses_a_folder_with_files_zoo_did_not_write(cifar_dir, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="holds files zoo did not write"):
        train(tiny(cifar_dir, epochs=1), run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors", overwrite=True)
    assert (tmp_path / "run" / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("flags, message", [
    (["--wd", "inf"], "weight decay and warmup must be finite and >= 0"),
    (["--lr", "1e30", "--warmup", "0", "--opt", "sgd"], "infinite or NaN"),
])
def test_a_diverged_run_writes_no_weights_and_no_bad_checkpoint(cifar_dir, tmp_path, flags, message):
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, *flags, "--out", "w.safetensors",
                     cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "w.safetensors").exists()
    for checkpoint in tmp_path.rglob("checkpoint.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(checkpoint).values() if t.is_floating_point())


def _start(cifar_dir, cwd, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "zoo", "train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY,
                             "--json", *extra], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_runs_started_together_never_share_a_folder_or_weights(cifar_dir, tmp_path):
    runs = [_start(cifar_dir, tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in runs]
    assert all(code == 0 for code, _, _ in results), results
    summaries = [json.loads(out) for _, out, _ in results]
    assert len({s["weights"] for s in summaries}) == 2 and len({s["run_dir"] for s in summaries}) == 2
    for summary in summaries:  # each config names its own weights, which name their run
        config = json.loads(open(os.path.join(summary["run_dir"], "config.json")).read())
        assert config["weights"] == summary["weights"]
        assert zoo.load_model(summary["weights"]).zoo_meta["run"] == summary["run_dir"]


def test_two_runs_with_the_same_out_do_not_both_succeed(cifar_dir, tmp_path):
    runs = [_start(cifar_dir, tmp_path, "--out", "same.safetensors") for _ in range(2)]
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in runs)
    assert [code for code, _ in results] == [0, 2], results
    assert "exists" in results[1][1]
    assert zoo.load_model(tmp_path / "same.safetensors").zoo_meta["run"] == str(tmp_path / "runs" / "same")


def test_resume_writes_where_the_run_wrote_whatever_the_current_folder(cifar_dir, tmp_path):
    first, elsewhere = tmp_path / "first", tmp_path / "elsewhere"
    first.mkdir()
    elsewhere.mkdir()
    (elsewhere / "weights").mkdir()
    (elsewhere / "weights" / "mine.safetensors").write_text("unrelated")
    os.chdir(first)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(tiny(cifar_dir), run_dir="runs/mine", weights="weights/mine.safetensors", reporter=StopAtEpoch(1))
        os.chdir(elsewhere)
        train(tiny(cifar_dir), resume=first / "runs" / "mine")
    finally:
        os.chdir(ROOT)
    assert (elsewhere / "weights" / "mine.safetensors").read_text() == "unrelated"
    assert zoo.load_model(first / "weights" / "mine.safetensors").zoo_meta["metrics"]["epoch"] == 2


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(epoch=-5), "epoch -5 is not in 0..2"),
    (lambda d: d.update(step=10**9), "step 1000000000 is not in"),
    (lambda d: d.update(history="x"), "a history of 1 epochs"),
    (lambda d: d["optimizer"]["param_groups"][0].update(lr={"__dtype__": "load"}), "'load' is not a dtype"),
    (lambda d: d["optimizer"]["state"].update({"0": {"momentum_buffer": {"__tensor__": "nowhere"}}}),
     "optimizer or random state does not fit"),
])
def test_a_crafted_checkpoint_is_one_clear_error(cifar_dir, tmp_path, change, message):
    config = tiny(cifar_dir, opt="sgd-momentum")
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors", reporter=StopAtEpoch(1))
    checkpoint = tmp_path / "run" / "checkpoint.safetensors"
    rewrite_metadata(checkpoint, checkpoint, change)
    with pytest.raises(UserError, match=message):
        train(config, resume=tmp_path / "run", weights=tmp_path / "w.safetensors")
    assert not (tmp_path / "w.safetensors").exists()


def test_experiment_names_and_labels_stay_inside_the_output_folder(cifar_dir, tmp_path):
    experiment = tmp_path / "e.toml"
    experiment.write_text('name = "../../escaped"\n[base]\nmodel = "vgg_bn"\nepochs = 1\nbatch_size = 20\n'
                          'augs = []\nmodel_options = {layout = "8,M"}\n'
                          '[grid]\nlr = [{label = "..", lr = 0.1}, {label = "../x", lr = 0.2}]\n')
    work = tmp_path / "work"
    work.mkdir()
    result = run_zoo("compare", str(experiment), "--data-dir", str(cifar_dir), cwd=work)
    assert result.returncode == 0, result.stderr
    made = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    assert all(str(p).startswith(("work/comparisons/", "data", "e.toml")) or str(p) in ("work", "work/comparisons")
               for p in made), made


def test_report_does_not_overwrite_without_overwrite(cifar_dir, tmp_path):
    train(tiny(cifar_dir, epochs=1), run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "results.md").write_text("mine")
    result = run_zoo("report", str(tmp_path / "run"), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "report" / "results.md").read_text() == "mine"
    assert run_zoo("report", str(tmp_path / "run"), "--out", str(tmp_path / "report"), "--overwrite",
                   cwd=tmp_path).returncode == 0


def test_weights_files_keep_the_mode_the_umask_gives(cifar_dir, tmp_path):
    train(tiny(cifar_dir, epochs=1), run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors")
    umask = os.umask(0)
    os.umask(umask)
    for path in (tmp_path / "w.safetensors", tmp_path / "run" / "checkpoint.safetensors",
                 tmp_path / "run" / "config.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
