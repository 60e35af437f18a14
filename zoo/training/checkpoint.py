"""Checkpoints: a run's model, optimizer, trainer and RNG state and its position in the epoch, as
safetensors (no pickle), checked like any file when read back."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..base.version import __version__
from .config import RunConfig
from ..base.errors import UserError, first_line
from .trainer import BaseTrainer
from ..io.weights import atomic_save, clean_state_dict, inner_model, read_safetensors


@dataclass
class Position:
    """Where a run is: epochs done, and within the current epoch the steps done, its order and sums."""

    epoch: int = 0
    step: int = 0
    order: torch.Tensor | None = None
    loss_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    skipped: torch.Tensor | None = None  # steps whose loss overflowed (fp16), which the trainer skipped
    seconds: float = 0.0
    skipped_before: float = 0.0  # skipped steps up to the last log step (all ranks)
    logged_step: int = 0
    skipped_in_a_row: int = 0  # steps skipped in whole log windows since the last applied one (all ranks)


def save_checkpoint(path: Path, model, optimizer, trainer: BaseTrainer, position: Position,
                     config: RunConfig, history: list[dict[str, Any]]) -> None:
    state = clean_state_dict(model)
    check_finite(state, path, position.epoch + (position.step == 0), position.step or "the last")
    tensors = {f"model.{k}": v for k, v in state.items()}
    tensors["rng.cpu"] = torch.get_rng_state()
    if trainer.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(trainer.device)
    for name in ("order", "loss_sum", "correct", "skipped"):
        if getattr(position, name) is not None:
            tensors[f"position.{name}"] = getattr(position, name).detach().to("cpu").contiguous()
    document = {"epoch": position.epoch, "step": position.step, "seconds": position.seconds,
                "optimizer": _lift_tensors(optimizer.state_dict(), "optimizer", tensors),
                "trainer": _lift_tensors(trainer.state_dict(), "trainer", tensors),
                "model": config.model, "history": history, "zoo_version": __version__}
    atomic_save(tensors, path, {"zoo": json.dumps(document)})


def _lift_tensors(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``value`` as JSON: each tensor inside moves to ``tensors[key...]``, leaving a reference to it,
    and dtypes and tuples are marked to come back as they were. Optimizers keep all of these anywhere
    in their state (timm's lamb, adafactorbv, kron)."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, dict):
        return {str(k): _lift_tensors(v, f"{key}.{k}", tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_lift_tensors(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, tuple):  # kron's random.getstate() must come back a tuple
        return {"__tuple__": _lift_tensors(list(value), key, tensors)}
    return value


def _restore_tensors(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__dtype__" in value:
            dtype = getattr(torch, str(value["__dtype__"]), None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"{value['__dtype__']!r} is not a dtype")
            return dtype
        if "__tuple__" in value:
            return tuple(_restore_tensors(value["__tuple__"], tensors))
        return {k: _restore_tensors(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_tensors(v, tensors) for v in value]
    return value


def load_checkpoint(path: Path, model, optimizer, trainer: BaseTrainer, config: RunConfig, steps_per_epoch: int,
                     train_images: int) -> tuple[Position, list[dict[str, Any]]]:
    """Restore a run from its checkpoint. A checkpoint is untrusted like any file: every field is
    checked, and anything that does not fit this run is one clear error."""
    tensors, document = read_safetensors(path, "checkpoint")
    try:
        position, history = _checked_position(document, tensors, config, steps_per_epoch, train_images)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UserError(f"{path} is not a checkpoint of this run, or it is corrupt ({type(exc).__name__}: "
                        f"{str(exc)[:80]})") from exc
    model_state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    try:
        inner_model(model).load_state_dict(model_state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{path} holds weights of another model ({first_line(exc)})") from exc
    try:
        optimizer_state = _restore_tensors(document["optimizer"], tensors)
        optimizer_state["state"] = {int(index): state for index, state in optimizer_state["state"].items()}
        optimizer.load_state_dict(optimizer_state)  # places each tensor on its parameter's device
        trainer.load_state_dict(_restore_tensors(document.get("trainer", {}), tensors))
        torch.set_rng_state(tensors["rng.cpu"])
        if "rng.cuda" in tensors and trainer.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], trainer.device)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as exc:
        raise UserError(f"{path}: the optimizer or random state does not fit this run, or it is corrupt "
                        f"({type(exc).__name__}: {str(exc).strip()[:80]})") from exc
    # ... but not in its memory format: state made with zeros_like(param) was channels_last, and a
    # reduction over it (lamb's trust ratio) sums in another order in another format
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
    if position.order is not None:
        position.order, position.loss_sum, position.correct, position.skipped = (
            t.to(trainer.device) for t in (position.order, position.loss_sum, position.correct, position.skipped))
    return position, history


def _checked_position(document: dict[str, Any], tensors: dict[str, torch.Tensor], config: RunConfig,
                      steps_per_epoch: int, train_images: int) -> tuple[Position, list[dict[str, Any]]]:
    epoch, step, seconds, history = document["epoch"], document.get("step", 0), document.get("seconds", 0.0), \
        document["history"]
    if type(epoch) is not int or not 0 <= epoch <= config.epochs:
        raise ValueError(f"epoch {epoch!r} is not in 0..{config.epochs}")
    if type(step) is not int or not 0 <= step < steps_per_epoch:
        raise ValueError(f"step {step!r} is not in 0..{steps_per_epoch - 1}")
    if not isinstance(seconds, (int, float)) or not 0 <= seconds < 1e9:
        raise ValueError(f"seconds {seconds!r}")
    if not isinstance(history, list) or len(history) != epoch or not all(isinstance(r, dict) for r in history):
        raise ValueError(f"a history of {epoch} epochs")
    if document.get("model") != config.model:
        raise ValueError(f"it is a checkpoint of {document.get('model')!r}")
    position = Position(epoch, step, seconds=float(seconds))
    if step:
        order = tensors["position.order"]
        if order.dtype != torch.int64 or tuple(order.shape) != (train_images,) or not torch.equal(
                order.sort().values, torch.arange(train_images)):
            raise ValueError(f"the sample order is not a permutation of the {train_images} training images")
        position.order, position.loss_sum, position.correct, position.skipped = (
            order, tensors["position.loss_sum"].reshape(()), tensors["position.correct"].reshape(()),
            tensors.get("position.skipped", torch.zeros(())).reshape(()))
    return position, history


def check_finite(state: dict[str, torch.Tensor], checkpoint: Path, epoch: int, step: int) -> None:
    """Never write non-finite weights: a run that diverged stops with what it last saved."""
    if not all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()):
        raise UserError(f"the weights became infinite or NaN by epoch {epoch}, step {step}: the run diverged; "
                        f"{last_good(checkpoint)}; try a lower `lr`, more `warmup` or less `weight_decay`")


def unwrapped(model: torch.nn.Module, zoo_config: dict[str, Any]) -> torch.nn.Module:
    inner = inner_model(model)
    inner.zoo_config = zoo_config
    return inner


def last_good(checkpoint: Path) -> str:
    return f"the last good checkpoint is {checkpoint}" if checkpoint.exists() else "no checkpoint was written yet"
