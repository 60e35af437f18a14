"""The SE block (Hu et al., 2017), added through an architecture's attention slot or by surgery."""
from __future__ import annotations

import functools

import torch
from torch import nn

from zoo import Architecture, UserError, add_attention


GATE_BIAS = 3.0


class SqueezeExcite(nn.Module):
    """Global average pool, bottleneck of ``channels // reduction``, sigmoid gate per channel."""

    def __init__(self, channels: int, reduction: int = 16, gate_bias: float = GATE_BIAS):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        # Gates start near 0.95, not sigmoid(0) = 0.5: thirteen half-gates in a network without
        # batch norm (se-vgg16) would shrink the signal 8000-fold and it would never train.
        nn.init.constant_(self.fc2.bias, gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(scale))))


def wrap(build, arch: Architecture, reduction: int = 16, placement: str | None = None, min_channels: int = 16,
         gate_bias: float = GATE_BIAS):
    """SE blocks with reduction ``reduction``. ``placement`` is one of the architecture's attention
    sites (VGG: "conv" after every conv, "stage" after every stage; ResNet: "block", on the residual
    branch before the addition); other models get SE after every conv with ``min_channels`` outputs.
    ``gate_bias`` sets where the gates start: sigmoid(3) = 0.95 by default, 0 for the paper's 0.5."""
    if not isinstance(reduction, int) or reduction < 1:
        raise UserError(f"SE reduction must be a positive integer, got {reduction!r}")
    make = functools.partial(SqueezeExcite, reduction=reduction, gate_bias=gate_bias)
    return add_attention(build, arch, make, SqueezeExcite, "SE", placement, min_channels)
