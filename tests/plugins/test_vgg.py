"""The VGG plugin (zoo_vgg): the paper's configurations, adjustable structure, the lab's head."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo.base.errors import UserError


def _convs(model):
    return [m for m in model.features if isinstance(m, nn.Conv2d)]


def test_vgg_c_has_1x1_convs_where_the_paper_puts_them():
    kernels = [c.kernel_size[0] for c in _convs(zoo.create_model("vgg16c"))]
    assert kernels == [3, 3, 3, 3, 3, 3, 1, 3, 3, 1, 3, 3, 1]


def test_vgg_a_lrn_has_lrn_after_the_first_conv():
    features = list(zoo.create_model("vgg11_lrn").features)
    assert [type(m).__name__ for m in features[:4]] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in features) == 1


def test_vgg_structure_is_adjustable():
    model = zoo.create_model("vgg", layout="32,M,64k1,LRN,M", width=0.5, num_classes=3, in_chans=1, input_size=28)
    assert [(c.out_channels, c.kernel_size[0]) for c in _convs(model)] == [(16, 3), (32, 1)]
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)
    with pytest.raises(UserError, match="bad VGG layer 'x7'"):
        zoo.create_model("vgg", layout="64,x7")


def test_the_labs_fc_stack_head_on_the_cifar_vgg():
    import torchvision

    features = sum(p.numel() for p in torchvision.models.vgg16_bn().features.parameters())  # the oracle's
    model = zoo.create_model("vgg16_bn", num_classes=10, input_size=32, head="mlp")
    head = (512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10)  # 512-4096-4096-10, the paper's FCs
    assert sum(p.numel() for p in model.parameters()) == features + head
    assert [type(m).__name__ for m in model.classifier] == ["Linear", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(zoo.UserError, match="unknown VGG head 'fc'"):
        zoo.create_model("vgg16_bn", head="fc")
