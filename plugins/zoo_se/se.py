"""The SE block and the two ways to add it: through an architecture's attention slot, or by surgery."""
from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

from zoo import Architecture, UserError


class SqueezeExcite(nn.Module):
    """Global average pool, bottleneck of ``channels // reduction``, sigmoid gate per channel."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(scale))))


class ConvSE(nn.Module):
    """A conv followed by an SE block, put in the conv's place by surgery."""

    def __init__(self, conv: nn.Conv2d, se: nn.Module):
        super().__init__()
        self.conv, self.se = conv, se

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.conv(x))


def insert_after_convs(module: nn.Module, make: Callable[[int], nn.Module], min_channels: int) -> int:
    """Replace every ``Conv2d`` with at least ``min_channels`` outputs by conv + SE; returns how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and child.out_channels >= min_channels:
            setattr(module, name, ConvSE(child, make(child.out_channels)))
            count += 1
        elif not isinstance(child, (ConvSE, SqueezeExcite)):
            count += insert_after_convs(child, make, min_channels)
    return count


def wrap(build, arch: Architecture, reduction: int = 16, placement: str | None = None, min_channels: int = 16):
    """Build the model with SE blocks. ``placement`` is one of the architecture's attention sites
    (VGG: "conv" after every conv, "stage" after every stage; ResNet: "block"); models without
    sites get SE after every conv with at least ``min_channels`` outputs."""
    if not isinstance(reduction, int) or reduction < 1:
        raise UserError(f"SE reduction must be a positive integer, got {reduction!r}")
    make = functools.partial(SqueezeExcite, reduction=reduction)
    if arch.attention_sites:
        placement = placement or arch.attention_sites[0]
        if placement not in arch.attention_sites:
            raise UserError(f"SE placement {placement!r} is not available for {arch.name!r}; "
                            f"choose {', '.join(arch.attention_sites)}")
        return build(attn_layer=make, attn_site=placement)
    if placement not in (None, "conv"):
        raise UserError(f"{arch.name!r} takes SE only after its convs (placement=conv), not {placement!r}")
    model = build()
    if any(isinstance(m, SqueezeExcite) for m in model.modules()):
        raise UserError(f"{arch.name!r} already has SE blocks; wrapping twice is not allowed")
    if insert_after_convs(model, make, min_channels) == 0:
        raise UserError(f"{arch.name!r} has no conv with at least {min_channels} channels to put SE after")
    return model
