"""Data-parallel training through torchrun: 2 CPU processes (gloo) against one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_zoo


def _args(cifar_dir, model: str, out, *extra: str, augs: tuple[str, ...] = ("none",)) -> list[str]:
    return ["train", model, "--data-dir", str(cifar_dir), "--set", "layout=8,M,16,M", "--epochs", "1",
            "--batch-size", "20", *(a for aug in augs for a in ("--aug", aug)), "--opt", "sgd-momentum", "--lr", "0.05",
            "--warmup", "0", "--out", str(out / "w.safetensors"), "--run-dir", str(out / "run"), "--json", *extra]


# SyncBatchNorm without augmentation: test_sync_bn_processes_match_one_in_fp64_for_every_batch_norm_family.
@pytest.mark.parametrize("model, extra, augs", [
    ("vgg", (), ("none",)),
    # every rank draws the whole batch's crops and flips, as one process does, then takes its part
    ("vgg_bn", ("--sync-bn",), ("crop=4", "hflip")),
], ids=["no batch norm", "augmented"])
def test_two_processes_match_one_with_the_same_global_batch(cifar_dir, tmp_path, model, extra, augs):
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    one = run_zoo(*_args(cifar_dir, model, single, *extra, augs=augs), cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two = run_zoo(*_args(cifar_dir, model, parallel, *extra, augs=augs), "--nproc", "2", cwd=tmp_path, timeout=300)
    assert two.returncode == 0, two.stderr
    summary = json.loads(two.stdout)  # printed once, by rank 0
    assert summary["processes"] == 2 and " in 2 processes; " in two.stderr

    assert sorted(p.name for p in parallel.iterdir()) == ["run", "w.safetensors"]
    assert len((parallel / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    a, b = load_file(single / "w.safetensors"), load_file(parallel / "w.safetensors")
    assert a.keys() == b.keys() and not any(k.startswith("module.") for k in b)
    for key in a:
        torch.testing.assert_close(b[key].float(), a[key].float(), rtol=1e-4, atol=1e-5, msg=key)

    evaluated = json.loads(run_zoo("eval", str(parallel / "w.safetensors"), "--data-dir", str(cifar_dir),
                                   "--json").stdout)
    assert evaluated["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert evaluated["accuracy"] == pytest.approx(json.loads(one.stdout)["test_accuracy"])


# Every built-in family with batch norm, with zoo's default recipe (sgd-nesterov, warmup, weight decay,
# cosine). In fp32, training amplifies rounding: a one-process ResNet-20 run differs from itself under
# another thread count by as much as from a two-process run (docs/distributed.md). In fp64 rounding is
# 1e-16, so any difference the processes compute would show; none does.
FAMILIES = {
    "vgg_bn": ["vgg_bn", "--set", "layout=8,M,16,M"],
    "resnet basic": ["resnet20", "--set", "width=0.25"],
    "resnet bottleneck": ["resnet", "--set", "block=bottleneck", "--set", "layers=[1,1]", "--set", "base_channels=4",
                          "--set", "shape=cifar"],
    "se-resnet": ["se-resnet", "--set", "layers=[1,1]", "--set", "base_channels=8", "--set", "shape=cifar"],
}


# Augmented once, on the family with the most kinds of layers: each rank's part of the whole batch's
# crops and flips is the same for every family.
@pytest.mark.parametrize("family, augs", [*((family, ()) for family in FAMILIES),
                                          ("se-resnet", ("--aug", "crop=4", "--aug", "hflip"))],
                         ids=[*FAMILIES, "se-resnet augmented"])
def test_sync_bn_processes_match_one_in_fp64_for_every_batch_norm_family(cifar_dir, tmp_path, family, augs):
    model, *options = FAMILIES[family]
    if not augs:
        augs = ("--aug", "none")

    def run(out, *extra):
        result = run_zoo("train", model, *options, "--data-dir", str(cifar_dir), "--epochs", "1", "--batch-size", "20",
                         "--sync-bn", "--trainer", "fp64", "--seed", "3", *augs, "--out", str(out / "w.safetensors"),
                         "--run-dir", str(out / "run"), "--json", *extra, cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr
        return load_file(out / "w.safetensors")

    one, two = run(tmp_path / "one"), run(tmp_path / "two", "--nproc", "2")
    assert one.keys() == two.keys() and any("running_var" in k for k in one)
    for key in one:  # running statistics included
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)


def test_zoo_train_works_unchanged_under_torchrun(cifar_dir, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "zoo",
               *_args(cifar_dir, "vgg", tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["processes"] == 2


def _one_error_line(result: subprocess.CompletedProcess, message: str) -> None:
    """zoo's contract under --nproc too: exit 2, the error once, no launcher traceback or banner."""
    assert result.returncode == 2, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("zoo: error:")] == \
        [line for line in result.stderr.splitlines() if message in line]
    assert result.stderr.count(message) == 1 and "Traceback" not in result.stderr and "*****" not in result.stderr


def test_user_errors_under_nproc_are_one_line_and_exit_2(cifar_dir, tmp_path):
    odd = run_zoo(*_args(cifar_dir, "vgg", tmp_path / "odd"), "--batch-size", "15", "--nproc", "2", cwd=tmp_path)
    _one_error_line(odd, "does not split evenly over 2 processes")
    diverged = run_zoo(*_args(cifar_dir, "vgg", tmp_path / "nan"), "--lr", "1e12", "--nproc", "2", cwd=tmp_path)
    _one_error_line(diverged, "the loss became")
    (tmp_path / "taken").mkdir()  # only rank 0 looks at the disk; the others must stop with it
    taken = run_zoo(*_args(cifar_dir, "vgg", tmp_path / "x"), "--run-dir", str(tmp_path / "taken"), "--nproc", "2",
                    cwd=tmp_path)
    _one_error_line(taken, "exists")


def test_ctrl_c_under_nproc_checkpoints_once_and_says_how_to_resume(tmp_path):
    import shlex
    import signal
    import time

    run = tmp_path / "run"
    args = ["train", "vgg_bn", "--data", "fashion-mnist-sample", "--set", "layout=8,M,16,M", "--epochs", "30",
            "--limit-train", "1000", "--limit-test", "100", "--batch-size", "20", "--run-dir", str(run),
            "--out", str(tmp_path / "w.safetensors"), "--nproc", "2"]
    process = subprocess.Popen([sys.executable, "-m", "zoo", *args], cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text().strip():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)  # the terminal's Ctrl-C; torchrun passes it on to the workers
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130, stderr
    [hint] = [line for line in stderr.splitlines() if "resume with: " in line]
    again = shlex.split(hint.split("resume with: ")[1])
    assert again[0] == "zoo" and again[again.index("--nproc") + 1] == "2" and again[-4:-2] == ["--resume", str(run)]
    assert "Traceback" not in stderr and not (tmp_path / "w.safetensors").exists()
    resumed = run_zoo(*again[1:], cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 30


def test_a_killed_distributed_run_resumes_with_the_same_processes(tmp_path):
    import signal
    import time

    from conftest import write_cifar10

    data = write_cifar10(tmp_path / "data", per_batch=400)
    args = ["train", "vgg", "--data-dir", str(data), "--set", "layout=16,M,32,M", "--epochs", "3", "--batch-size", "20",
            "--aug", "none", "--opt", "sgd-momentum", "--lr", "0.02", "--warmup", "0", "--json"]
    full = run_zoo(*args, "--out", str(tmp_path / "full.safetensors"), "--run-dir", str(tmp_path / "full"),
                   "--nproc", "2", cwd=tmp_path, timeout=300)
    assert full.returncode == 0, full.stderr

    run = tmp_path / "cut"
    cut_args = [*args, "--out", str(tmp_path / "cut.safetensors"), "--run-dir", str(run), "--nproc", "2"]
    process = subprocess.Popen([sys.executable, "-m", "zoo", *cut_args], cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text().strip():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)  # torchrun and both workers
    process.wait()
    assert not (tmp_path / "cut.safetensors").exists()

    resumed = run_zoo(*cut_args, "--resume", str(run), cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(tmp_path / "full.safetensors"), load_file(tmp_path / "cut.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _sync_bn_rank(rank: int, init_file: str, out: str) -> None:
    """One of two gloo processes: each normalises its half of a batch with CpuSyncBatchNorm."""
    import gc

    import torch.distributed as dist

    from zoo.training.distributed import CpuSyncBatchNorm

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    batch, upstream = _sync_bn_batch()
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        bn = CpuSyncBatchNorm(4)
        half = batch[rank * 4:(rank + 1) * 4].to(dtype).requires_grad_()
        y = bn(half)
        (y.float() * upstream[rank * 4:(rank + 1) * 4]).sum().backward()
        name = str(dtype).split(".")[1]
        results.update({f"{name}.y": y.float(), f"{name}.grad": half.grad.float(), f"{name}.weight_grad": bn.weight.grad,
                        f"{name}.running_var": bn.running_var, f"{name}.dtype": torch.tensor(y.dtype == dtype)})
    torch.save(results, f"{out}.{rank}")
    del bn, half, y
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def _sync_bn_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Activations with a large mean (100), where E[x^2] - E[x]^2 cancels, and an upstream gradient."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 4, 5, 5, generator=g) * 0.5 + 100, torch.randn(8, 4, 5, 5, generator=g)


def test_cpu_sync_batchnorm_equals_batch_norm_over_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_sync_bn_rank, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2)
    ranks = [torch.load(tmp_path / f"out.{rank}") for rank in range(2)]
    batch, upstream = _sync_bn_batch()
    for dtype, tolerance in ((torch.float32, 1e-4), (torch.bfloat16, 2e-2)):
        name = str(dtype).split(".")[1]
        whole = batch.to(dtype).detach().requires_grad_()  # what one process would normalise
        reference = torch.nn.BatchNorm2d(4)
        y = reference(whole)
        (y.float() * upstream).sum().backward()
        close = dict(rtol=tolerance, atol=tolerance)
        torch.testing.assert_close(torch.cat([r[f"{name}.y"] for r in ranks]), y.detach().float(), **close)
        torch.testing.assert_close(torch.cat([r[f"{name}.grad"] for r in ranks]), whole.grad.float(), **close)
        # the weight's gradient: each rank holds its half's share, which DDP sums
        torch.testing.assert_close(ranks[0][f"{name}.weight_grad"] + ranks[1][f"{name}.weight_grad"],
                                   reference.weight.grad, **close)
        for r in ranks:
            torch.testing.assert_close(r[f"{name}.running_var"], reference.running_var, **close)
            assert r[f"{name}.dtype"]  # output in the input's dtype, as BatchNorm2d's
