"""Every `zoo` command of the README runs as written, so that the README cannot drift from the CLI.
Where a command needs what this machine cannot have (CIFAR-10, a network, hours), it runs at tiny
sizes on files in CIFAR-10's exact format (the limits appended as a user would add them; the last
value of an option wins), and one that must download weights is resolved with --print-config."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import picture_folder, run_zoo, write_cifar10

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = ["--epochs", "1", "--limit-train", "40", "--limit-test", "20", "--batch-size", "20"]


def readme_commands() -> list[str]:
    """The `zoo ...` lines of the README's shell blocks after its setup, without their comments."""
    text = README.read_text().split("## The CLI at a glance", 1)[1]
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("zoo ")]


def as_run_here(command: str, work: Path) -> list[str]:
    """``command`` as this test runs it in ``work``: placeholders filled and globs expanded as a shell
    would, sizes made tiny where it trains."""
    command = command.replace("<run>", "r1").replace("runs/resnet20-cifar10-20261128-120000", "runs/r1")
    command = command.replace("experiments/", f"{README.parent / 'experiments'}/")
    words = []
    for word in shlex.split(command.split(" > ")[0])[1:]:
        words += sorted(str(p.relative_to(work)) for p in work.glob(word) if not p.name.startswith(".")) \
            if "*" in word and "/" in word else [word]  # as bash globs: dotfiles not matched
    if words[0] == "train" and "--pretrained" in words:  # the weights are downloaded: resolved, not trained
        return words + ["--print-config"]
    if words[0] == "train" and "--print-config" not in words and "--resume" not in words:
        return words + TINY + ["--set", "width=0.125"] * ("--config" not in words)
    if words[0] == "compare":
        return words + (["--epochs", "1", "--limit-train", "512", "--limit-test", "256"] if "--quick" in words else TINY)
    return words


@pytest.mark.slow
def test_every_command_of_the_readme_runs_as_written(tmp_path):
    commands = readme_commands()
    assert len(commands) >= 25 and any(c.startswith("zoo compare") for c in commands)
    cifar = write_cifar10(tmp_path / "data", per_batch=20)
    work = tmp_path / "work"
    work.mkdir()
    picture_folder(work / "photos")
    (work / "shoe.png").write_bytes(next((work / "photos" / "train").rglob("*.png")).read_bytes())
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(work), "WANDB_API_KEY": "", "MLFLOW_TRACKING_URI": "",
           "ZOO_DATA_DIR": str(cifar)}  # CIFAR-10 where zoo looks for it
    for run in ("r1", "a", "b"):  # r1: the run the README's <run> stands for
        made = run_zoo("train", "resnet20", *TINY, "--set", "width=0.125", "--run-dir", f"runs/{run}", env=env, cwd=work)
        assert made.returncode == 0, made.stderr
    for command in commands:
        words = as_run_here(command, work)
        if " > " in command:  # its output goes to a file, as the README says
            result = subprocess.run([sys.executable, "-m", "zoo", *words], cwd=work, capture_output=True, text=True,
                                    env={**os.environ, **env}, timeout=600)
            (work / command.split(" > ")[1].strip()).write_text(result.stdout)
        else:
            result = run_zoo(*words, env=env, cwd=work, timeout=600)
        assert result.returncode == 0, f"{command}\n-> zoo {' '.join(words)}\n{result.stderr[-2000:]}"
