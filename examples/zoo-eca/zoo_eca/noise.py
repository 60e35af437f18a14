"""Additive Gaussian noise, per pixel, clamped back to [0, 1]."""
from __future__ import annotations

import torch

from zoo import UserError


class GaussianNoise:
    def __init__(self, sigma: float = 0.05):
        if not isinstance(sigma, (int, float)) or not 0 <= sigma <= 1:
            raise UserError(f"--aug noise={sigma!r}: sigma must be in [0, 1]")
        self.sigma = sigma

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        return (x + torch.randn_like(x) * self.sigma).clamp_(0, 1), y
