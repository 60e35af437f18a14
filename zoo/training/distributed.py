"""Data-parallel training on torch.distributed: launched by torchrun, gloo on CPU, nccl on CUDA."""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..base.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_world() -> World:
    """The world torchrun describes in the environment (a single process without it)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def init(world: World, device: torch.device) -> None:
    """Join the process group: nccl for CUDA devices, gloo otherwise. A CUDA rank first makes its own
    GPU current, and binds the group to it: else every rank's first collective lands on cuda:0."""
    if world.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")


def shutdown(world: World, together: bool) -> None:
    """Leave the process group. After a finished or interrupted run, together: a rank that leaves
    while rank 0 still writes aborts gloo. After an error, at once: the others may never arrive."""
    if world.distributed and dist.is_initialized():
        # DistributedDataParallel sits in reference cycles: collect it now, or it is destroyed after
        # the process group at exit and gloo aborts the process (seen as exit code -6 under torchrun).
        gc.collect()
        if together:
            dist.barrier()
        dist.destroy_process_group()


def all_sum(*tensors: torch.Tensor) -> None:
    """Sum tensors across ranks, in place (nothing to do in a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        for tensor in tensors:
            dist.all_reduce(tensor)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast(value: Any) -> Any:
    """Rank 0's value on every rank."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class _SumAcrossRanks(torch.autograd.Function):
    """All-reduce (sum) that autograd can go through: every rank uses the sum, so each input's
    gradient is the sum of every rank's gradient of it."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """Batch norm whose batch statistics cover every rank's batch, for CPU (gloo) runs, where
    torch's SyncBatchNorm is not available. Statistics are computed in fp32 and in two passes (mean,
    then squared deviations from it): bf16 activations under --amp, or a large mean, would cancel
    to nothing in a one-pass E[x^2] - E[x]^2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels, shape = x.shape[1], (1, x.shape[1], 1, 1)
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))  # fp64 under the fp64 trainer
        total = _SumAcrossRanks.apply(torch.cat([x32.sum((0, 2, 3)), x32.new_tensor([x.numel() / channels])]))
        count = total[-1]
        mean = total[:channels] / count
        centered = x32 - mean.view(shape)
        var = _SumAcrossRanks.apply(centered.square().sum((0, 2, 3))) / count
        if self.track_running_stats:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked + 1)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(var.detach() * count / (count - 1), alpha=momentum)
                self.num_batches_tracked += 1
        y = centered * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d synchronised across ranks: torch's SyncBatchNorm on accelerators, ours on CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = CpuSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                      child.track_running_stats)
            synced.load_state_dict(child.state_dict())
            setattr(model, name, synced.to(child.weight.device if child.affine else device))
        else:
            convert_sync_batchnorm(child, device)
    return model


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around the model, on this rank's device."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def split_batch(batch_size: int, world: World) -> int:
    if batch_size % world.size:
        raise UserError(f"the batch size {batch_size} does not split evenly over {world.size} processes")
    return batch_size // world.size


def launch(nproc: int, argv: list[str], marker_env: str) -> int:
    """Run the ``zoo`` command ``argv`` (without its ``--nproc``) in ``nproc`` processes through
    torchrun's launcher, in this process; return their exit status. The workers print their own
    errors, so the launcher adds no traceback. ``marker_env`` tells the workers they were launched so."""
    import logging

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if nproc < 1:
        raise UserError(f"--nproc must be positive, got {nproc}")
    units = torch.cuda.device_count() or os.cpu_count() or 1
    if nproc > units:  # more processes than GPUs (or cores) cannot run, and forking them can fail half-way
        what = "GPUs" if torch.cuda.device_count() else "CPU cores"
        raise UserError(f"--nproc {nproc} is more than the {units} {what} of this machine")
    if "RANK" in os.environ:
        raise UserError("--nproc launches torchrun itself; under torchrun, leave it out")
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    os.environ[marker_env] = str(nproc)
    # The cores shared out (torchrun would set 1 per process, with a banner).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # After Ctrl-C the workers train on to the next log step (up to 25) and checkpoint: give them time.
    os.environ.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "600")
    for name in list(logging.root.manager.loggerDict):  # each sets its own level, so one by one
        if name.startswith("torch.distributed.elastic"):  # the workers say what happened, in one line
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        torchrun.run(torchrun.parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "zoo", *args]))
    except ChildFailedError as exc:
        # A worker that stopped on purpose says why (130 Ctrl-C, 2 user error); others may have died of it.
        codes = {failure.exitcode for failure in exc.failures.values()}
        return next((code for code in (130, 2) if code in codes), 1)
    except SignalException:
        return 130
    return 0
