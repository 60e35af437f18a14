"""The timm plugin (zoo_timm): timm's models by name."""
from __future__ import annotations

import torch

import zoo


def test_timm_models_take_classes_and_channels():
    model = zoo.create_model("timm/resnet18", num_classes=3, in_chans=1).eval()
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 3)
    vit = zoo.create_model("timm/vit_tiny_patch16_224", num_classes=3, input_size=32).eval()  # built for one size
    assert vit(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert len([n for n in zoo.list_models("timm/*")]) > 1000
