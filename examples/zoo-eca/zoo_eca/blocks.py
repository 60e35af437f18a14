"""The ECA block: global average pool, a 1-D conv across channels, a sigmoid gate."""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

from zoo import Architecture, UserError, add_attention


def adaptive_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """The paper's k = |log2(C) / gamma + b / gamma|, rounded to the nearest odd number."""
    k = int(abs(math.log2(channels) / gamma + b / gamma))
    return k if k % 2 else k + 1


class EfficientChannelAttention(nn.Module):
    def __init__(self, channels: int, kernel_size: int | None = None):
        super().__init__()
        k = kernel_size or adaptive_kernel_size(channels)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptor = x.mean((2, 3)).unsqueeze(1)  # (N, 1, C)
        return x * torch.sigmoid(self.conv(descriptor)).transpose(1, 2).unsqueeze(-1)


def wrap(build, arch: Architecture, kernel_size: int | None = None, placement: str | None = None,
         min_channels: int = 16):
    """ECA where the architecture takes attention (ResNet blocks, VGG convs or stages), else after convs."""
    if kernel_size is not None and (not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0):
        raise UserError(f"ECA kernel_size must be a positive odd integer, got {kernel_size!r}")
    make = functools.partial(EfficientChannelAttention, kernel_size=kernel_size)
    return add_attention(build, arch, make, EfficientChannelAttention, "ECA", placement, min_channels)
