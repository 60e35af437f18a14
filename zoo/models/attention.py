"""Adding an attention block to any model: through the architecture's attention slot when it has
one, else by surgery after its convolutions. Shared by attention wrappers (se, a plugin's eca)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..base.errors import UserError
from ..registry.specs import Architecture

MakeBlock = Callable[[int], nn.Module]


class ConvThen(nn.Module):
    """A conv followed by a block, put in the conv's place by surgery."""

    def __init__(self, conv: nn.Conv2d, block: nn.Module):
        super().__init__()
        self.conv, self.attn = conv, block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.conv(x))


def insert_after_convs(module: nn.Module, make: MakeBlock, min_channels: int = 16) -> int:
    """Replace every ``Conv2d`` with at least ``min_channels`` outputs by conv + ``make(channels)``."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and child.out_channels >= min_channels:
            setattr(module, name, ConvThen(child, make(child.out_channels)))
            count += 1
        elif not isinstance(child, ConvThen):
            count += insert_after_convs(child, make, min_channels)
    return count


def add_attention(build, arch: Architecture, make: MakeBlock, block_type: type[nn.Module], label: str,
                  placement: str | None = None, min_channels: int = 16) -> nn.Module:
    """Build a model with ``make(channels)`` blocks of ``block_type``.

    ``placement`` picks one of ``arch.attention_sites`` (the first by default); an architecture
    without sites gets a block after every conv with at least ``min_channels`` outputs. ``label``
    names the wrapper in errors.
    """
    if arch.attention_sites:
        placement = placement or arch.attention_sites[0]
        if placement not in arch.attention_sites:
            raise UserError(f"{label} placement {placement!r} is not available for {arch.name!r}; "
                            f"choose {', '.join(arch.attention_sites)}")
        # the architecture places the blocks, and never touches their layers or init (docs/plugins.md)
        return build(attn_layer=make, attn_site=placement)
    if placement not in (None, "conv"):
        raise UserError(f"{arch.name!r} takes {label} only after its convs (placement=conv), not {placement!r}")
    model = build()
    if any(isinstance(m, block_type) for m in model.modules()):
        raise UserError(f"{arch.name!r} already has {label} blocks; wrapping twice is not allowed")
    if insert_after_convs(model, make, min_channels) == 0:
        raise UserError(f"{arch.name!r} has no conv with at least {min_channels} channels to put {label} after")
    return model
