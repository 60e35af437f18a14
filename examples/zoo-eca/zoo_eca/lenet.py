"""LeNet-5 with ReLU and max-pooling, the common modern reading of the 1998 network."""
from __future__ import annotations

from torch import nn

from zoo import UserError


def lenet5(num_classes: int = 10, in_chans: int = 1, input_size: int = 32) -> nn.Module:
    if input_size < 28:
        raise UserError(f"lenet5 needs inputs of at least 28 pixels, got {input_size}")
    side = ((input_size - 4) // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(in_chans, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(inplace=True),
        nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_classes),
    )
