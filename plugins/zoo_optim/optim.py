"""Optimizer factories: ``factory(params, lr=..., weight_decay=..., **options)``."""
from __future__ import annotations

import torch

from zoo import UserError


def _check(lr: float, weight_decay: float) -> None:
    if not lr > 0:
        raise UserError(f"learning rate must be positive, got {lr}")
    if weight_decay < 0:
        raise UserError(f"weight decay must be >= 0, got {weight_decay}")


def _betas(betas) -> tuple[float, float]:
    if not (isinstance(betas, (list, tuple)) and len(betas) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        raise UserError(f"betas must be two numbers in [0, 1), e.g. betas=[0.9,0.999]; got {betas!r}")
    return float(betas[0]), float(betas[1])


def _fused_on_cuda(params) -> tuple[list, dict]:
    """The parameters as a list, and ``fused=True`` when they all live on CUDA: one kernel for the
    whole update, and with fp16 loss scaling no host sync to check for overflow."""
    params = list(params)
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    on_cuda = bool(tensors) and all(t.is_cuda and t.is_floating_point() for t in tensors)
    return params, ({"fused": True} if on_cuda else {})


def sgd(params, lr: float, weight_decay: float = 0.0, momentum: float = 0.0, nesterov: bool = False,
        dampening: float = 0.0):
    _check(lr, weight_decay)
    if not 0 <= momentum < 1:
        raise UserError(f"momentum must be in [0, 1), got {momentum}")
    params, fused = _fused_on_cuda(params)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                           weight_decay=weight_decay, dampening=dampening, **fused)


def adam(params, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
    _check(lr, weight_decay)
    params, fused = _fused_on_cuda(params)
    return torch.optim.Adam(params, lr=lr, betas=_betas(betas), eps=eps, weight_decay=weight_decay, **fused)


def adamw(params, lr: float, weight_decay: float = 0.01, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
    _check(lr, weight_decay)
    params, fused = _fused_on_cuda(params)
    return torch.optim.AdamW(params, lr=lr, betas=_betas(betas), eps=eps, weight_decay=weight_decay, **fused)


def rmsprop(params, lr: float, weight_decay: float = 0.0, alpha: float = 0.99, momentum: float = 0.0,
            eps: float = 1e-8):
    _check(lr, weight_decay)
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, momentum=momentum, eps=eps, weight_decay=weight_decay)


def timm_optimizer(params, lr: float, opt: str, weight_decay: float = 0.0, **options):
    _check(lr, weight_decay)
    from timm.optim import create_optimizer_v2

    try:
        return create_optimizer_v2(params, opt=opt, lr=lr, weight_decay=weight_decay, **options)
    except (TypeError, ValueError, ImportError) as exc:
        raise UserError(f"timm cannot build optimizer {opt!r}: {exc}") from exc
