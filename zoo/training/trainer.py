"""The trainer base that trainer plugins subclass: the device, one training step, and how a model is
prepared for it (memory format, compilation, the small-map rule)."""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from ..base.errors import UserError, first_line
from ..models.summary import forward_one


def usable_device(name: str | None) -> torch.device:
    """The device ``name`` (default: cuda if available, else cpu), or one clear error if this machine
    cannot use it."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps", "xpu"):  # meta, say: tensors without data cannot train
        raise UserError(f"device {name!r} cannot train or evaluate; use cpu, cuda or cuda:N")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:  # no driver, no such index, a CPU-only build
        raise UserError(f"device {name!r} is not usable here ({first_line(exc)}); "
                        "use `device` cpu") from exc
    return device


class BaseTrainer:
    """Runs training steps on one device in fp32: the plain trainer, and the base of others.

    A trainer plugin subclasses this and overrides :meth:`autocast` and :meth:`backward_step`
    (mixed precision), or :meth:`prepare` (memory format, compilation).
    """

    precision = "fp32"
    skips_overflow = False  # whether a step with a non-finite loss is skipped (fp16 loss scaling) not applied

    def __init__(self, device: str | None = None, channels_last: bool | None = None, compile: bool = False):
        self.device = usable_device(device)
        self.channels_last = self.default_channels_last() if channels_last is None else bool(channels_last)
        self.compile = bool(compile)
        # Measured on CPUs (docs/benchmarks.md): oneDNN's channels_last convolutions lose to contiguous
        # ones on feature maps under 8x8. Unless the format was asked for, those layers stay contiguous.
        chosen = channels_last is None and self.channels_last and self.device.type == "cpu" and not self.compile
        self.contiguous_below = 8 if chosen else 0
        if self.device.type == "cuda":
            # Shapes are fixed through a run, so cuDNN's autotuner pays off; TF32 matmuls are what
            # fp32 training on tensor cores is expected to use (torchvision's and timm's references do).
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True

    def default_channels_last(self) -> bool:
        """Measured (docs/benchmarks.md): on CPUs channels_last speeds fp32 ResNets up by a third (but
        not small feature maps: see ``contiguous_below``); on CUDA it pays off with reduced precision only."""
        return self.device.type == "cpu"

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on the device, in the trainer's memory format (compilation comes after)."""
        return model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)

    def compiled(self, model: torch.nn.Module) -> torch.nn.Module:
        return torch.compile(model) if self.compile else model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        loss.backward()
        optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state to checkpoint (a gradient scaler's, say)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "precision": self.precision, "channels_last": self.channels_last,
                "contiguous_below": self.contiguous_below, "compile": self.compile}


def prepare_model(trainer: BaseTrainer, model: torch.nn.Module, input_shape: tuple[int, ...],
                  compile: bool = True) -> torch.nn.Module:
    """Check that an image of ``input_shape`` runs through ``model`` (one clear error if not), then the
    trainer's :meth:`~BaseTrainer.prepare`, small feature maps contiguous where it chose so, and the
    trainer's compilation unless ``compile`` is False (a distributed run compiles after DDP wraps it)."""
    small = _convs_on_small_maps(model, input_shape, getattr(trainer, "contiguous_below", 0))
    model = trainer.prepare(model)
    for conv in small:
        conv.weight.data = conv.weight.data.contiguous()
        conv.register_forward_pre_hook(_contiguous_input)
    return trainer.compiled(model) if compile else model


def _convs_on_small_maps(model: torch.nn.Module, input_shape: tuple[int, ...], below: int) -> list[torch.nn.Module]:
    """The convolutions whose input is under ``below`` pixels on a side, found with one image."""
    small: list[torch.nn.Module] = []

    def find(conv, args):
        if min(args[0].shape[-2:]) < below:
            small.append(conv)

    hooks = [m.register_forward_pre_hook(find) for m in model.modules() if isinstance(m, torch.nn.Conv2d)] if below else []
    try:
        forward_one(model, input_shape)
    finally:
        for hook in hooks:
            hook.remove()
    return small


def _contiguous_input(conv: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].contiguous(), *args[1:])


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """fp32 for the reduced-precision outputs of autocast; fp64 stays fp64 (the fp64 trainer)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))
