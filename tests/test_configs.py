"""Configs that run again: --print-config prints what --config loads, a run's config.json is a config,
--resume alone continues a run, and configs and weights record what reproduces the run."""
from __future__ import annotations

import json

import pytest

import zoo
from zoo.base.errors import UserError

from conftest import run_zoo

TINY = ["--set", "layout=8,M,16,M", "--batch-size", "20", "--aug", "none"]


def test_a_printed_config_runs_again_and_a_runs_config_is_a_config(cifar_dir, tmp_path):
    printed = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--epochs", "2", "--opt", "adam",
                      "--print-config", cwd=tmp_path)
    assert printed.returncode == 0 and [p.name for p in tmp_path.iterdir()] == ["data"]  # it trains and writes nothing
    config = json.loads(printed.stdout)
    assert config["lr"] == 0.001 and config["model_options"] == {"layout": "8,M,16,M"}  # adam's own rate, resolved
    (tmp_path / "c.json").write_text(printed.stdout)
    first = run_zoo("train", "--config", "c.json", "--epochs", "1", "--run-dir", "a", "--out", "a.safetensors",
                    "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    recorded = json.loads((tmp_path / "a" / "config.json").read_text())
    assert {k: recorded[k] for k in config} == {**config, "epochs": 1}  # flags override the file
    again = run_zoo("train", "--config", "a/config.json", "--run-dir", "b", "--out", "b.safetensors", "--json",
                    cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["test_accuracy"] == json.loads(first.stdout)["test_accuracy"]


def test_resume_alone_continues_a_run_with_its_own_config(cifar_dir, tmp_path):
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--epochs", "1", "--seed", "4",
                     "--run-dir", "r", "--out", "r.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resumed = run_zoo("train", "--resume", "r", "--epochs", "2", "--json", cwd=tmp_path)  # more epochs may change
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs"] == 2
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 2
    changed = run_zoo("train", "--resume", "r", "--seed", "5", cwd=tmp_path)
    assert changed.returncode == 2 and "it was run with other seed (e.g. seed=4)" in changed.stderr


def test_configs_and_weights_record_what_reproduces_the_run(cifar_dir, tmp_path):
    git = tmp_path / ".git"  # a working tree on a branch, as git writes it
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("0123456789abcdef0123456789abcdef01234567\n")
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--epochs", "1", "--amp",
                     "--run-dir", "r", "--out", "w.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for recorded in (json.loads((tmp_path / "r" / "config.json").read_text())["provenance"],
                     zoo.load_model(tmp_path / "w.safetensors").zoo_meta["provenance"]):
        assert recorded["versions"]["zoo"] == zoo.__version__ and recorded["versions"]["torch"]
        assert {"vgg", "datasets", "optim", "trainers"} <= set(recorded["plugins"])
        assert recorded["command"][1:3] == ["train", "vgg_bn"]
        assert recorded["git_commit"] == "0123456789abcdef0123456789abcdef01234567"
        assert recorded["machine"]["device"] == "cpu" and isinstance(recorded["machine"]["cpu_flags"], list)


@pytest.mark.parametrize("text, message", [
    ('{"model": "vgg_bn", "wings": 2}', "unknown option wings"),
    ('{"model": "vgg_bn", "epochs": "3"}', "option epochs must be int, got '3'"),
    ("[1]", "is not a run config"),
])
def test_a_bad_config_file_is_one_clear_error(tmp_path, text, message):
    (tmp_path / "c.json").write_text(text)
    with pytest.raises(UserError, match=message):
        zoo.RunConfig.from_file(tmp_path / "c.json")
    result = run_zoo("train", "--config", str(tmp_path / "c.json"), cwd=tmp_path)
    assert result.returncode == 2 and message.split(",")[0] in result.stderr


def test_outside_a_terminal_progress_lines_come_with_an_eta(cifar_dir, tmp_path):
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--epochs", "2", "--log-every", "1",
                     "--log-every", "0s", "--run-dir", "r", "--out", "w.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "2 epochs of 5 steps (batch 20)" in lines[0]
    assert lines[1].startswith("estimated after 1 steps: 0:00:0")
    steps = [line for line in lines if line.startswith("epoch 1/2  step ")]
    assert [line.split()[3] for line in steps] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    assert all("ETA 0:00:" in line and "(run)" in line for line in steps)
    quiet = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--epochs", "1", "--run-dir", "q",
                    "--out", "q.safetensors", cwd=tmp_path)  # the default: a line every 30 s, none in a tiny run
    assert not any(" step " in line for line in quiet.stderr.splitlines())


def test_in_a_terminal_the_bar_has_an_eta(cifar_dir, tmp_path):
    import os
    import pty
    import subprocess
    import sys

    main, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    process = subprocess.Popen([sys.executable, "-m", "zoo", "train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY,
                                "--epochs", "1", "--log-every", "1", "--run-dir", "r", "--out", "w.safetensors"],
                               stdin=secondary, stdout=secondary, stderr=secondary, cwd=tmp_path, env=env)
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=120) == 0
    text = output.decode(errors="replace")
    assert "ETA" in text and "epoch 1/1" in text and "estimated after" in text


def test_a_fifo_in_dot_git_or_a_huge_config_never_stalls_a_run(tmp_path):
    import os
    from pathlib import Path

    from zoo.training.provenance import git_commit

    (tmp_path / ".git").mkdir()
    os.mkfifo(tmp_path / ".git" / "HEAD")
    assert git_commit(Path(tmp_path)) is None  # returns at once, nothing read from the FIFO
    (tmp_path / "big.json").write_text('{"model": "' + "x" * (2 << 20) + '"}')
    with pytest.raises(UserError, match="larger than a run config could be"):
        zoo.RunConfig.from_file(tmp_path / "big.json")


def test_choices_are_recorded_as_names_and_options_and_older_shorthand_files_still_resume(cifar_dir, tmp_path):
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), "--set", "layout=8,M,16,M", "--batch-size", "20",
                     "--aug", "crop=2", "--aug", "hflip", "--sched", "step=1", "--sched-set", "gamma=0.5",
                     "--epochs", "1", "--run-dir", "r", "--out", "r.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (recorded["augs"], recorded["aug_options"]) == (["crop", "hflip"], {"crop": {"padding": 2}})
    assert (recorded["sched"], recorded["sched_options"]) == ("step", {"step_size": 1, "gamma": 0.5})
    # Another schedule named on the command line starts from its own options, not the file's.
    printed = run_zoo("train", "--config", "r/config.json", "--sched", "cosine", "--print-config", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["sched_options"] == {} and json.loads(printed.stdout)["augs"] == ["crop", "hflip"]
    # A config.json as older zoo wrote it, with the shorthand in the names, still resumes: read as the same run.
    older = {**recorded, "augs": ["crop=2", "hflip"], "sched": "step=1", "sched_options": {"gamma": 0.5}}
    del older["aug_options"]
    (tmp_path / "r" / "config.json").write_text(json.dumps(older))
    resumed = run_zoo("train", "--resume", "r", "--epochs", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 2
    assert "resuming at epoch 2/2, step 0/" in resumed.stderr  # where it goes on from, said
    assert "MB checkpoint with the optimizer's state, to extend the run with --resume RUN --epochs N" in resumed.stderr


def test_the_library_takes_choices_as_names_with_options_beside_them():
    from zoo.training.config import Run

    run = Run.resolve(zoo.RunConfig(model="resnet20", aug_options={"crop": {"padding": 2}}))  # the default augs
    assert [(spec.name, options) for spec, options in run.augs] == [("crop", {"padding": 2}), ("hflip", {})]
    for changes, message in [
        (dict(augs=["crop=4"]), r"`augs` takes names, not 'crop=4' .*give 'crop' and its options in `aug_options`"),
        (dict(sched="multistep=[2]"), r"`sched` takes names, not 'multistep=\[2\]'.* `sched_options`"),
        (dict(augs=["hflip"], aug_options={"crop": {"padding": 2}}), "options of 'crop', which is not among the "
                                                                      r"augmentations \(hflip\)"),
        (dict(augs=["hflip", "augment:hflip"]), "names an augmentation twice"),
        (dict(aug_options={"crop": 4}), r"option aug_options must be dict\[str, dict\[str, Any\]\], got \{'crop': 4\}"),
        (dict(augs=["crop"], aug_options={"crop": {"pad": 2}}), "pad"),
    ]:
        with pytest.raises(UserError, match=message):
            Run.resolve(zoo.RunConfig(model="resnet20", **changes))


def test_option_flags_over_a_config_change_the_options_they_name_and_keep_the_others(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({
        "model": "se-vgg_bn", "model_options": {"layout": "8,M,16,M", "se": {"reduction": 4, "placement": "stage"}},
        "sched": "multistep", "sched_options": {"milestones": [0.5], "gamma": 0.1}, "augs": []}))

    def printed(*flags):
        result = run_zoo("train", "--config", "c.json", *flags, "--print-config", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    config = printed("--set", "width=0.5", "--set", "se.reduction=8", "--sched-set", "gamma=0.5")
    assert config["model_options"] == {"layout": "8,M,16,M", "width": 0.5, "se": {"reduction": 8, "placement": "stage"}}
    assert config["sched_options"] == {"milestones": [0.5], "gamma": 0.5}
    # Another schedule (or model) named with its options: the old one's options stay behind.
    assert printed("--sched", "step=2", "--sched-set", "gamma=0.5")["sched_options"] == {"step_size": 2, "gamma": 0.5}
    assert printed("resnet20", "--set", "width=0.5")["model_options"] == {"width": 0.5}
