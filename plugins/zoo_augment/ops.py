"""Each augmentation maps a float batch ``x`` in [0, 1] of shape (N, C, H, W) and its labels to new ones.

Randomness comes from torch's global generator on ``x``'s device, so a seeded run repeats exactly
and a resumed run continues the same stream.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from zoo import UserError


def _check(name: str, value: float, low: float, high: float = math.inf) -> None:
    if not isinstance(value, (int, float)) or not low <= value <= high:
        raise UserError(f"--aug {name}={value!r} is out of range [{low}, {high}]")


class HFlip:
    def __init__(self, p: float = 0.5):
        _check("hflip", p, 0, 1)
        self.p = p

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        flip = torch.rand(x.shape[0], device=x.device) < self.p
        if x.device.type == "cpu":  # the chosen images alone, in place: 4x faster; on a GPU nonzero() would sync
            chosen = flip.nonzero().squeeze(1)
            return x.index_copy_(0, chosen, x[chosen].flip(3)), y
        return torch.where(flip[:, None, None, None], x.flip(3), x), y


class RandomCrop:
    """Pad with zeros, then take an (H, W) window at a random offset per image: a random shift."""

    def __init__(self, padding: int = 4):
        _check("crop", padding, 0, 64)
        self.padding = int(padding)

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        p = self.padding
        if p == 0:
            return x, y
        n, c, h, w = x.shape
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), device=x.device)
        dx = torch.randint(0, 2 * p + 1, (n,), device=x.device)
        rows = (torch.arange(h, device=x.device)[None] + dy[:, None])[:, None, :, None].expand(n, c, h, w + 2 * p)
        cols = (torch.arange(w, device=x.device)[None] + dx[:, None])[:, None, None, :].expand(n, c, h, w)
        return padded.gather(2, rows).gather(3, cols), y


class Rotate:
    def __init__(self, degrees: float = 15):
        _check("rotate", degrees, 0, 180)
        self.radians = math.radians(degrees)

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        angle = (torch.rand(x.shape[0], device=x.device) * 2 - 1) * self.radians
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False), y


class Cutout:
    def __init__(self, size: int = 8):
        _check("cutout", size, 1, 1024)
        self.size = int(size)

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        n, _, h, w = x.shape
        # The square's centre may lie anywhere, so part of it may fall outside the image.
        top = torch.randint(0, h, (n, 1, 1), device=x.device) - self.size // 2
        left = torch.randint(0, w, (n, 1, 1), device=x.device) - self.size // 2
        ys, xs = torch.arange(h, device=x.device)[None, :, None], torch.arange(w, device=x.device)[None, None, :]
        hole = (ys >= top) & (ys < top + self.size) & (xs >= left) & (xs < left + self.size)
        return x.masked_fill(hole[:, None], 0.0), y


class ColorJitter:
    def __init__(self, strength: float = 0.4):
        _check("jitter", strength, 0, 1)
        self.strength = strength

    def _factor(self, x: torch.Tensor) -> torch.Tensor:
        return 1 + (torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * 2 - 1) * self.strength

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        x = x * self._factor(x)  # brightness
        mean = x.mean((1, 2, 3), keepdim=True)
        x = (x - mean) * self._factor(x) + mean  # contrast
        if x.shape[1] == 3:
            gray = (x * x.new_tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)
            x = (x - gray) * self._factor(x) + gray  # saturation
        return x.clamp_(0, 1), y


def _beta(alpha: float) -> float:
    """One mixing weight per batch, drawn on the CPU (no device sync)."""
    return float(torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha))).sample())


class Mixup:
    """Batch-level: labels must be soft (N, classes)."""

    def __init__(self, alpha: float = 0.2):
        _check("mixup", alpha, 1e-6, 100)
        self.alpha = alpha

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        lam = _beta(self.alpha)
        perm = torch.randperm(x.shape[0], device=x.device)
        return x * lam + x[perm] * (1 - lam), y * lam + y[perm] * (1 - lam)


class CutMix:
    def __init__(self, alpha: float = 1.0):
        _check("cutmix", alpha, 1e-6, 100)
        self.alpha = alpha

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        n, _, h, w = x.shape
        lam = _beta(self.alpha)
        perm = torch.randperm(n, device=x.device)
        bh, bw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        top = int(torch.randint(0, h - bh + 1, ()).item())
        left = int(torch.randint(0, w - bw + 1, ()).item())
        x = x.clone()
        x[:, :, top:top + bh, left:left + bw] = x[perm, :, top:top + bh, left:left + bw]
        area = bh * bw / (h * w)
        return x, y * (1 - area) + y[perm] * area
