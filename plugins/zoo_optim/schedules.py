"""Schedules: ``factory(epochs=..., **options)`` returns ``factor(t)``, t the time in epochs (a float)."""
from __future__ import annotations

import math
from typing import Callable, Sequence

from zoo import UserError

Factor = Callable[[float], float]


def constant(epochs: int) -> Factor:
    return lambda t: 1.0


def _gamma(gamma: float) -> None:
    if not 0 < gamma <= 1:
        raise UserError(f"gamma must be in (0, 1], got {gamma}")


def multistep(epochs: int, milestones: Sequence[int | float] | int | float = (20, 30, 40),
              gamma: float = 0.1) -> Factor:
    """Like torch's MultiStepLR stepped once per epoch: during epoch e, gamma ** (milestones <= e).

    A milestone below 1 is a fraction of the run: [0.4, 0.6, 0.8] of 50 epochs is [20, 30, 40].
    """
    milestones = [milestones] if isinstance(milestones, (int, float)) else list(milestones)
    if not milestones or any(isinstance(m, bool) or not isinstance(m, (int, float)) or not m > 0
                             or (isinstance(m, float) and m >= 1) for m in milestones):
        raise UserError(f"milestones must be whole epochs or fractions of the run, e.g. multistep=[20,30,40] or "
                        f"multistep=[0.4,0.6,0.8]; got {milestones!r}")
    milestones = [max(1, round(m * epochs)) if isinstance(m, float) else m for m in milestones]
    _gamma(gamma)
    return lambda t: gamma ** sum(math.floor(t) >= m for m in milestones)


def step(epochs: int, step_size: int = 30, gamma: float = 0.1) -> Factor:
    if not isinstance(step_size, int) or step_size < 1:
        raise UserError(f"step size must be a positive whole number of epochs, got {step_size!r}")
    _gamma(gamma)
    return lambda t: gamma ** (math.floor(t) // step_size)


def cosine(epochs: int, min_factor: float = 0.0) -> Factor:
    return lambda t: min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(t / epochs, 1.0)))


def onecycle(epochs: int, pct_start: float = 0.25, div_factor: float = 25.0, final_div_factor: float = 1e4) -> Factor:
    """Rise from 1/div_factor to 1 over ``pct_start`` of the run, then cosine down to 1/(div*final_div)."""
    if not 0 < pct_start < 1:
        raise UserError(f"onecycle's pct_start must be in (0, 1), got {pct_start}")
    start, end, peak = 1 / div_factor, 1 / (div_factor * final_div_factor), pct_start * epochs

    def factor(t: float) -> float:
        if t < peak:
            return start + (1 - start) * t / peak
        progress = min((t - peak) / (epochs - peak), 1.0)
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
