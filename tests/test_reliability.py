"""Bad input, crashes and hostile files lose nothing: each error is one line and exit code 2, with no
file created or changed; Ctrl-C and SIGKILL leave a checkpoint that resumes to the same weights."""
from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import zoo
from zoo import Scheduler, hookimpl
from zoo.base.errors import UserError
from zoo.base.options import parse_sets
from zoo.testing import fresh_registry
from zoo import RunConfig, SilentReporter, train
from zoo.registry.factories import call_factory
from zoo.training.config import parse_choice

from conftest import run_zoo, write_cifar10

TINY = ["--set", "layout=8,M,16,M", "--batch-size", "20", "--epochs", "1"]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A data folder, a trained weights file, a finished run, and a few damaged files."""
    root = tmp_path_factory.mktemp("work")
    data = write_cifar10(root / "data")
    result = run_zoo("train", "vgg_bn", "--data-dir", str(data), *TINY, "--out", str(root / "good.safetensors"),
                     "--run-dir", str(root / "run"), cwd=root)
    assert result.returncode == 0, result.stderr
    good = (root / "good.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    header_size = int.from_bytes(good[:8], "little")
    header = json.loads(good[8:8 + header_size])

    def rewrite_metadata(name: str, change) -> None:
        document = json.loads(header["__metadata__"]["zoo"])
        change(document)
        raw = json.dumps({**header, "__metadata__": {"zoo": json.dumps(document)}}).encode()
        (root / name).write_bytes(len(raw).to_bytes(8, "little") + raw + good[8 + header_size:])

    rewrite_metadata("other-classes.safetensors", lambda d: d["options"].update(num_classes=5))
    rewrite_metadata("fp16.safetensors", lambda d: d["trainer"].update(name="amp", options={"dtype": "fp16"}))
    (root / "notes.txt").write_text("not an image")
    broken = root / "broken"
    write_cifar10(broken / "truncated")
    batch = broken / "truncated" / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:500])
    write_cifar10(broken / "incomplete")
    (broken / "incomplete" / "cifar-10-batches-py" / "test_batch").unlink()
    write_cifar10(broken / "crafted")
    (broken / "crafted" / "cifar-10-batches-py" / "data_batch_1").write_bytes(
        b"\x80\x02cposix\nsystem\nq\x00X\x0b\x00\x00\x00touch pwnedq\x01\x85q\x02Rq\x03.")
    fashion = broken / "idx" / "fashion-mnist"
    fashion.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        import gzip

        with gzip.open(fashion / f"{name}.gz", "wb") as f:
            f.write((2051 if "images" in name else 2049).to_bytes(4, "big") + (10).to_bytes(4, "big") + b"\x00" * 20)
    (root / "a-file").write_text("in the way")
    (root / "huge.toml").write_text("[grid]\n" + "".join(f"a{i} = [{{lr = 0.{j + 1}}}" + "".join(
        f", {{lr = 0.{j + 1}{k}}}" for k in range(9)) + "]\n" for i, j in zip(range(11), range(11))))
    (root / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    (root / "odd.toml").write_text("[base]\nmodel = 'vgg_bn'\nlr = 1979-05-27\n")
    (root / "inf.toml").write_text("[base]\nmodel = 'vgg_bn'\nmodel_options = {width = inf}\n")
    return root


ERRORS = [
    (["train", "vgg61"], "unknown model 'vgg61'; did you mean .*vgg16"),
    (["train", "sx-vgg16"], "unknown model 'sx-vgg16'; did you mean .*se-vgg16"),
    (["train", "vgg_bn", "--aug", "hflp"], "unknown augmentation 'hflp'; did you mean .*hflip"),
    (["train", "vgg_bn", "--opt", "adamm"], "unknown optimizer 'adamm'; did you mean .*adam"),
    (["train", "vgg_bn", "--sched", "cosin"], "unknown schedule 'cosin'; did you mean .*cosine"),
    (["train", "vgg_bn", "--trainer", "amq"], "unknown trainer 'amq'; did you mean .*amp"),
    (["train", "vgg_bn", "--data", "cifar11"], "unknown dataset 'cifar11'; did you mean .*cifar10"),
    (["train", "vgg_bn", "--aug", "rotate=abc"], "augmentation 'rotate': degrees must be a number, got 'abc'"),
    (["train", "vgg_bn", "--aug", "hflip=2"], r"--aug hflip=2 is out of range \[0, 1\]"),
    (["train", "vgg_bn", "--sched", "multistep=abc"], "milestones must be whole epochs or fractions of the run"),
    (["train", "vgg_bn", "--sched", "cosine=3"], "schedule 'cosine' takes no value"),
    (["train", "vgg_bn", "--set", "width"], "bad --set 'width': expected key=value"),
    # values of the wrong type, before any data is read
    (["train", "vgg_bn", "--opt-set", "momentum=abc", "--data-dir", "{root}/empty", "--no-download"],
     "optimizer 'sgd-nesterov': momentum must be a number, got 'abc'"),
    (["train", "vgg_bn", "--opt-set", "momentun=0.5", "--data-dir", "{root}/empty", "--no-download"],
     "optimizer 'sgd-nesterov' has no option 'momentun'"),
    (["train", "vgg_bn", "--opt", "adam", "--opt-set", "betas=[0.9]", "--data-dir", "{root}/empty", "--no-download"],
     r"betas must be two numbers in \[0, 1\), e.g. betas=\[0.9,0.999\]; got \[0.9\]"),
    (["train", "resnet20", "--set", "zero_init_residual=1"], "zero_init_residual must be true or false, got 1"),
    (["train", "vgg_bn", "--aug", "hflip=2", "--data-dir", "{root}/empty", "--no-download"], "out of range"),
    (["train", "vgg_bn", "--set", "depth=3"], "architecture 'vgg_bn' has no option 'depth'"),
    # option names are checked before any data is read: here, none could be
    (["train", "vgg_bn", "--set", "depth=3", "--data-dir", "{root}/empty", "--no-download"],
     "architecture 'vgg_bn' has no option 'depth'"),
    (["train", "se-vgg_bn", "--set", "se.redution=4", "--data-dir", "{root}/empty", "--no-download"],
     "wrapper 'se' has no option 'redution'"),
    (["train", "vgg_bn", "--set", "input_size=16"], "the data decides input_size in training"),
    (["train", "vgg", "--set", "layout=8,M,M,M,M,M,M"], "vgg cannot take 3x32x32 inputs: .*too small"),
    (["train", "vgg", "--set", "layout=8,M,M,M,M,M,M", "--no-channels-last"], "vgg cannot take 3x32x32 inputs"),
    (["info", "vgg16", "--input-size", "8"], "vgg16 cannot take 3x8x8 inputs: .*too small"),
    (["info", "timm/resnet18", "--set", "drop_rate=2"], "timm/resnet18 cannot take 3x224x224 inputs: dropout"),
    (["info", "resnet18", "--set", "input_size=16"], "set input_size with --input-size, not --set"),
    (["info", "timm/vit_tiny_patch16_224", "--input-size", "32", "--set", "img_size=224"],
     r"timm/vit_tiny_patch16_224 cannot take 3x32x32 inputs: Input height \(32\) doesn't match model \(224\)"),
    (["train", "vgg_bn", "--lr", "-1"], "learning rate must be positive and finite, got -1.0"),
    (["train", "vgg_bn", "--limit-train", "0"], "--limit-train must be positive, got 0"),
    (["train", "vgg_bn", "--epochs", "0"], "epochs must be a whole number >= 1, got 0"),
    (["train", "vgg_bn", "--set", "width=0"], r"width must be in \(0, 16\], num_classes and in_chans positive"),
    (["train", "resnet20", "--set", "width=-2"], "width, base_channels .* must be positive"),
    (["train", "vgg_bn", "--batch-size", "100000"], "batch size 100000 is larger than the 100 training images"),
    (["train", "vgg_bn", "--data-dir", "{root}/empty", "--no-download"], "cifar10 not found"),
    (["train", "vgg_bn", "--data-dir", "{root}/broken/incomplete"], "missing test_batch"),
    (["train", "vgg_bn", "--data-dir", "{root}/broken/truncated"], "data_batch_2 is truncated or corrupt"),
    (["train", "vgg_bn", "--data-dir", "{root}/broken/crafted"], "refusing to load posix.system"),
    (["train", "vgg_bn", "--data", "fashion-mnist", "--data-dir", "{root}/broken/idx"], "is not a valid idx file"),
    (["eval", "{root}/truncated.safetensors"], "is not a zoo weights file or is truncated/corrupt"),
    (["eval", "{root}/missing.safetensors"], "does not exist"),
    (["eval", "{root}/fp16.safetensors", "--device", "cpu"],
     r"fp16 autocast is for CUDA; .* \(the weights were trained with amp \{'dtype': 'fp16'\}; evaluate them with --trainer fp32\)"),
    (["eval", "{root}/run/checkpoint.safetensors"], "is a run's checkpoint, for zoo train --resume; use the weights"),
    (["eval", "{root}/good.safetensors", "--batch-size", "0"], "batch size must be a whole number >= 1, got 0"),
    (["eval", "{root}/good.safetensors", "--trainer", "amq"], "unknown trainer 'amq'; did you mean .*amp"),
    (["eval", "{root}/other-classes.safetensors"], "the weights do not fit 'vgg_bn'"),
    (["train", "vgg_bn", "--lr", "0.3", "--resume", "{root}/run"], "cannot resume .* other lr"),
    (["train", "vgg_bn", "--resume", "{root}/nowhere"], "is not a run folder"),
    (["train", "vgg_bn", "--out", "{root}/a-file/w.safetensors"], "cannot write to"),
    (["train", "vgg_bn", "--out", "{root}/good.safetensors"], "good.safetensors exists; choose another --out"),
    (["predict", "{root}/good.safetensors", "{root}/notes.txt"], "notes.txt is not an image zoo can read"),
    (["info", "resnet18", "--num-classes", "0"], "num-classes must be positive"),
    (["train", "vgg_bn", "--eval-batch-size", "0"],
     r"No such option '--eval-batch-size'\. Did you mean '--batch-size'\? \(see .*zoo train --help\)"),
    (["list", "--kind", "nope"], r"Invalid value for '--kind': 'nope' is not one of 'model', "),
    (["report", "{root}/nowhere"], r"Invalid value for 'RUNS\.\.\.': Directory .*nowhere' does not exist"),
    (["train", "vgg_bn", "--device", "gpu"], "unknown device 'gpu'; use cpu, cuda or cuda:N"),
    (["eval", "{root}/good.safetensors", "--device", "cuda:99"], r"device 'cuda:99' is not usable here \(.*\); use"),
    (["compare", "--model", "resnet20", "--augs", "nonee", "--dry-run"], "unknown augmentation 'nonee'"),
    (["compare"], "nothing to compare: give an experiment file"),
    (["train", "vgg_bn", "--set", "width=1e999"], "width must be a finite number, got inf"),
    (["train", "vgg_bn", "--device", "meta"], "device 'meta' cannot train or evaluate"),
    (["train", "vgg_bn", "--seed", str(2**64)], r"seed must be in 0..2\*\*63-1"),
    (["train", "vgg_bn", "--nproc", "1000"], "--nproc 1000 is more than the"),
    (["train", "vgg_bn", "--out", "x" * 300 + ".safetensors"], "is too long for a file name"),
    (["train", "vgg_bn", "--data-dir", "{root}/a-file"], r"Directory .*a-file' is a file"),
    (["compare", "{root}/huge.toml", "--dry-run"], "is a grid of 100,000,000,000 runs; at most 10,000"),
    (["compare", "{root}/deep.toml", "--dry-run"], "is not valid TOML|nested too deeply"),
    (["compare", "{root}/odd.toml", "--dry-run"], r"option lr must be float \| None, got datetime"),
    (["compare", "{root}/inf.toml", "--dry-run"], "width must be a finite number, got inf"),
    (["compare", "--model", "resnet20", "--lr", "0.1", "--lr", "0.1", "--dry-run"],
     "runs resnet20-0.1 and resnet20-0.1_ would be the same run; a value is given twice"),
]


@pytest.mark.parametrize("args, message", ERRORS, ids=[" ".join(a[:3]) for a, _ in ERRORS])
def test_user_errors_are_one_line_exit_2_and_change_nothing(workspace, tmp_path, args, message):
    args = [a.format(root=workspace) for a in args]
    if args[0] == "train" and "--data-dir" not in args:
        args += ["--data-dir", str(workspace / "data")]
    if args[0] == "train":
        for key, value in zip(TINY[::2], TINY[1::2]):
            if key not in args:
                args += [key, value]
    before = snapshot(workspace)
    result = run_zoo(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in result.stderr
    assert snapshot(workspace) == before and list(tmp_path.iterdir()) == []
    assert not (tmp_path / "pwned").exists()


def test_a_comparison_whose_first_run_fails_leaves_nothing_behind(tmp_path):
    result = run_zoo("compare", "--model", "vgg_bn", "--data", "imagefolder", "--data-dir", str(tmp_path / "none"),
                     "--out", str(tmp_path / "cmp" / "here"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("zoo: error: imagefolder needs")
    assert list(tmp_path.iterdir()) == []


def test_plain_zoo_prints_the_help():
    result = run_zoo()
    assert result.returncode == 0 and "Commands:" in result.stdout and result.stdout == run_zoo("--help").stdout


def test_debug_shows_the_traceback(tmp_path):
    result = run_zoo("--debug", "train", "vgg61", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr and "UserError" in result.stderr


def test_default_run_names_never_overwrite(workspace, tmp_path):
    args = ["train", "vgg_bn", "--data-dir", str(workspace / "data"), *TINY, "--json"]
    first = json.loads(run_zoo(*args, cwd=tmp_path).stdout)["weights"]
    second = json.loads(run_zoo(*args, cwd=tmp_path).stdout)["weights"]
    assert first != second and (tmp_path / first).exists() and (tmp_path / second).exists()
    result = run_zoo(*args, "--out", first, "--overwrite", cwd=tmp_path)
    assert result.returncode == 0


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("slow") / "data", per_batch=200)


def _train_args(data: Path, folder: Path) -> list[str]:
    return ["train", "vgg_bn", "--data-dir", str(data), "--set", "layout=16,M,32,M", "--batch-size", "10",
            "--epochs", "4", "--aug", "crop=2", "--aug", "hflip", "--opt", "adam", "--lr", "0.005",
            "--run-dir", str(folder / "run"), "--out", str(folder / "w.safetensors")]


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "zoo", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "training ended before the point to interrupt it"
        assert time.monotonic() < deadline
        time.sleep(0.001)


def _metrics_lines(run: Path) -> int:
    path = run / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def uninterrupted(slow_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    result = run_zoo(*_train_args(slow_data, folder), cwd=folder)
    assert result.returncode == 0, result.stderr
    return load_file(folder / "w.safetensors")


def _assert_same_weights(path: Path, reference: dict) -> None:
    weights = load_file(path)
    assert weights.keys() == reference.keys()
    for key in weights:
        assert torch.equal(weights[key], reference[key]), key


@pytest.mark.parametrize("point", ["before the first checkpoint", "after epoch 1", "during epoch 3"])
def test_sigkill_at_any_point_then_resume_gives_identical_weights(slow_data, uninterrupted, tmp_path, point):
    run = tmp_path / "run"
    process = _start(_train_args(slow_data, tmp_path), tmp_path)
    if point == "before the first checkpoint":
        _wait_for(lambda: (run / "config.json").exists(), process)
    elif point == "after epoch 1":
        _wait_for(lambda: _metrics_lines(run) >= 1, process)
    else:
        _wait_for(lambda: _metrics_lines(run) >= 2, process)
        time.sleep(0.1)
    process.kill()
    process.wait()
    assert not (tmp_path / "w.safetensors").exists()
    if point != "before the first checkpoint":
        assert (run / "checkpoint.safetensors").exists()
    result = run_zoo(*_train_args(slow_data, tmp_path), "--resume", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _assert_same_weights(tmp_path / "w.safetensors", uninterrupted)
    assert _metrics_lines(run) == 4


def test_ctrl_c_checkpoints_says_how_to_resume_and_exits_130(slow_data, uninterrupted, tmp_path):
    run = tmp_path / "run"
    process = _start(_train_args(slow_data, tmp_path), tmp_path)
    _wait_for(lambda: _metrics_lines(run) >= 1, process)
    time.sleep(0.15)  # into epoch 2
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("zoo: interrupted in epoch") and "resume with: zoo train" in message
    command = shlex.split(message.split("resume with: ", 1)[1])
    # the weights go elsewhere than zoo's own place, which zoo never takes from the run folder: --out says it
    assert command[-4:] == ["--resume", str(run), "--out", str(tmp_path / "w.safetensors")]
    result = run_zoo(*command[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _assert_same_weights(tmp_path / "w.safetensors", uninterrupted)


@hookimpl(specname="schedulers")
def _exploding_schedules():
    return [Scheduler("explode", lambda epochs: (lambda t: 1.0 if t < 1 else float("nan")),
                      "fine for one epoch, then not")]


class _Explode:
    schedulers = staticmethod(_exploding_schedules)


def test_a_diverging_loss_stops_the_run_and_keeps_the_last_good_checkpoint(workspace, tmp_path):
    registry = fresh_registry({"explode": _Explode()}, installed=("vgg", "datasets", "optim", "trainers", "augment"))
    config = RunConfig(model="vgg_bn", data="cifar10", data_dir=str(workspace / "data"), epochs=3, batch_size=20,
                       sched="explode", warmup=0, opt="sgd", model_options={"layout": "8,M,16,M"})
    checkpoint = tmp_path / "run" / "checkpoint.safetensors"
    seen = {}

    class Watch(SilentReporter):
        def epoch_end(self, record):
            seen["bytes"] = checkpoint.read_bytes()

    with pytest.raises(UserError, match=r"the loss became infinite or NaN in epoch 2, step \d+; the last good checkpoint is"):
        train(config, registry=registry, run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors", reporter=Watch(),
              log_every=1)
    assert checkpoint.read_bytes() == seen["bytes"]  # epoch 1's, untouched
    assert not (tmp_path / "w.safetensors").exists()


# ------------------------------------------------------------------ property-based: parsers never crash

REGISTRY = zoo.default_registry()
ARBITRARY = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
CHOICE = st.one_of(ARBITRARY, st.builds(lambda n, v: f"{n}={v}", st.sampled_from(
    ["hflip", "crop", "rotate", "cutout", "jitter", "mixup", "cutmix", "multistep", "step", "onecycle", "cosine",
     "sgd-momentum", "adam"]), ARBITRARY))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(ARBITRARY, max_size=4))
def test_set_options_parse_or_fail_cleanly(pairs):
    try:
        options = parse_sets(pairs)
    except UserError:
        return
    assert isinstance(options, dict)


@FAST
@given(CHOICE, st.sampled_from(["aug", "sched", "opt"]))
def test_aug_sched_opt_values_parse_and_build_or_fail_cleanly(text, kind):
    try:
        name, options = parse_choice(REGISTRY, kind, text)
        spec = REGISTRY.get(kind, name)
        if kind == "aug":
            call_factory(spec, **options)
        elif kind == "sched":
            factor = call_factory(spec, epochs=10, **options)
            factor(0.0), factor(9.5)
        else:
            call_factory(spec, [torch.zeros(1, requires_grad=True)], lr=0.1, weight_decay=0.0, **options)
    except UserError:
        pass


@FAST
@given(st.one_of(ARBITRARY, st.builds("-".join, st.lists(st.sampled_from(["se", "vgg16", "resnet18", "x", ""]),
                                                           max_size=4))))
def test_model_names_resolve_or_fail_cleanly(name):
    try:
        wrappers, arch = REGISTRY.resolve_model(name)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    assert arch.kind == "arch"


def test_a_data_folder_variable_naming_a_file_is_one_clear_error(workspace, tmp_path):
    result = run_zoo("train", "vgg_bn", *TINY, env={"ZOO_DATA_DIR": str(workspace / "a-file")}, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert re.search(r"\$ZOO_DATA_DIR .*a-file is not a folder", result.stderr), result.stderr


class _SkippingTrainer(zoo.BaseTrainer):
    """Skips a step whose loss is not finite, as fp16's gradient scaler does (which needs CUDA)."""

    skips_overflow = True

    def backward_step(self, loss, optimizer):
        if torch.isfinite(loss):
            super().backward_step(loss, optimizer)


class _OverflowEvery:
    """A trainer that skips overflowed steps, and an augmentation that makes every fourth batch
    infinite, so that those steps' losses overflow."""

    @hookimpl
    def trainers(self):
        return [zoo.Trainer("skipping", _SkippingTrainer, "skips non-finite steps")]

    @hookimpl
    def augmentations(self):
        calls = {"n": 0}

        def overflow_sometimes(**options):
            def aug(x, y):
                calls["n"] += 1
                return (x * float("inf") if calls["n"] % 4 == 0 else x), y
            return aug

        return [zoo.Augmentation("overflow", overflow_sometimes, "every fourth batch infinite")]


@pytest.mark.parametrize("trainer, skipped", [("skipping", 1), ("fp32", None)])
def test_overflowed_steps_a_trainer_skips_are_counted_not_divergence(workspace, tmp_path, trainer, skipped):
    registry = fresh_registry({"overflow": _OverflowEvery()}, installed=("vgg", "datasets", "optim", "trainers"))
    # no batch norm: an infinite forward pass would poison its running statistics, which no step undoes
    config = RunConfig(model="vgg", data="cifar10", data_dir=str(workspace / "data"), epochs=1, batch_size=20,
                       augs=["overflow"], trainer=trainer, opt="sgd", model_options={"layout": "8,M,16,M"})
    if skipped is None:  # a trainer that applies every step diverges on the first infinite loss
        with pytest.raises(UserError, match="the loss became infinite or NaN in epoch 1, step 4"):
            train(config, registry=registry, run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors",
                  log_every=1)
        return
    summary = train(config, registry=registry, run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors",
                    log_every=1)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert record["skipped_steps"] == skipped and math.isfinite(record["train_loss"])
    assert math.isfinite(summary["test_loss"])


# ------------------------------------------------------------------ more of issue 14's classes

def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that announces a huge image in a few bytes: what a decompression bomb starts with."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_an_image_that_announces_gigapixels_is_refused_before_decoding(workspace, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))
    result = run_zoo("predict", str(workspace / "good.safetensors"), str(bomb), cwd=tmp_path)
    assert result.returncode == 2 and "is too large an image" in result.stderr, result.stderr


def test_cifar_data_that_is_not_uint8_is_refused_not_cast(tmp_path):
    import pickle

    import numpy as np

    data = write_cifar10(tmp_path / "data")
    batch_file = data / "cifar-10-batches-py" / "data_batch_1"
    batch = pickle.loads(batch_file.read_bytes())
    batch[b"data"] = batch[b"data"].astype(np.float32) / 255  # floats in [0, 1] would all cast to 0
    batch_file.write_bytes(pickle.dumps(batch, protocol=2))
    result = run_zoo("train", "vgg_bn", "--data-dir", str(data), *TINY, cwd=tmp_path)
    assert result.returncode == 2 and "data of type float32, not uint8" in result.stderr, result.stderr


def test_ctrl_c_during_compare_exits_130_and_says_how_to_continue(slow_data, tmp_path):
    small = tmp_path / "small.toml"  # a small VGG: the grid, not the network, is what is interrupted
    small.write_text('[base]\nmodel = "vgg_bn"\nbatch_size = 20\nmodel_options = { layout = "16,M,32,M" }\n')
    process = _start(["compare", str(small), "--augs", "none", "--augs", "hflip", "--data-dir", str(slow_data),
                      "--epochs", "4", "--out", str(tmp_path / "cmp")], tmp_path)
    _wait_for(lambda: _metrics_lines(tmp_path / "cmp" / "runs" / "none") >= 1, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].endswith("run the same zoo compare again to continue")
    assert "Traceback" not in stderr


def test_a_temporary_file_left_by_a_killed_write_is_removed_by_the_next_write(workspace, tmp_path):
    import os

    stale, fresh = tmp_path / ".w.safetensors.old1.tmp", tmp_path / ".w.safetensors.new1.tmp"
    stale.write_bytes(b"half a file")
    fresh.write_bytes(b"another process is writing this")
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    result = run_zoo("train", "vgg_bn", "--data-dir", str(workspace / "data"), *TINY, "--out",
                     str(tmp_path / "w.safetensors"), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not stale.exists() and fresh.exists()  # one in progress is someone else's


def test_a_full_disk_is_one_line_and_leaves_no_half_written_run(workspace, tmp_path):
    """The first checkpoint does not fit: nothing to resume from, so the run takes back what it wrote,
    and the same command runs once there is room."""
    import os

    disk = tmp_path / "small-disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    try:
        result = run_zoo("train", "vgg_bn", "--data-dir", str(workspace / "data"), *TINY, "--set", "layout=128,M,256,M",
                         "--run-dir", str(disk / "run"), "--out", str(tmp_path / "w.safetensors"), cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        last = result.stderr.strip().splitlines()[-1]  # after the run's header: it had started
        assert last.startswith("zoo: error: cannot write") and "No space left on device" in last
        assert not (disk / "run").exists() and not list(disk.iterdir())  # no partial checkpoint, no temporary file
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    resumed = run_zoo("train", "vgg_bn", "--data-dir", str(workspace / "data"), *TINY, "--set", "layout=128,M,256,M",
                      "--run-dir", str(tmp_path / "roomy"), "--out", str(tmp_path / "w.safetensors"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
