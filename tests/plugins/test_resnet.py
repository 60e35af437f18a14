"""The ResNet plugin (zoo_resnet): the paper's depths and costs, adjustable depth and width, timm's feature maps."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo.models.summary import count_parameters, summarize


CIFAR_PAPER_MILLIONS = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7}
PAPER_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


@pytest.mark.parametrize("name, millions", CIFAR_PAPER_MILLIONS.items())
def test_cifar_resnets_of_the_paper(name, millions):
    model = zoo.create_model(name)
    assert round(count_parameters(model) / 1e6, 2 if millions < 1 else 1) == millions
    assert model.conv1.kernel_size == (3, 3) and isinstance(model.maxpool, nn.Identity)
    assert [model.layer1[0].conv1.out_channels, model.layer3[0].conv1.out_channels] == [16, 64]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name, gmacs", PAPER_GMACS.items())
def test_resnet_multiply_adds_match_table_1(name, gmacs):
    # The paper strides the bottleneck's first 1x1 conv; torchvision's v1.5 strides the 3x3 (4.1 G for -50).
    model = zoo.create_model(name, stride_in_1x1=True)
    macs = summarize(model, 224, 3)["multiply_adds"] / 1e9
    assert abs(macs - gmacs) / gmacs < 0.03, macs


def test_resnet_depth_and_width_are_adjustable():
    model = zoo.create_model("resnet", layers=[1, 1, 1], width=0.125, num_classes=5, input_size=32)
    assert [len(model.layer1), len(model.layer3)] == [1, 1] and model.fc.in_features == 32
    assert not hasattr(model, "layer4")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_features_only_gives_timms_feature_maps_per_stage():
    import timm

    ours, theirs = zoo.create_model("resnet50", features_only=True), timm.create_model("resnet50", features_only=True)
    x = torch.randn(1, 3, 224, 224)
    assert [t.shape for t in ours(x)] == [t.shape for t in theirs(x)]
    assert ours.feature_channels == theirs.feature_info.channels() == [64, 256, 512, 1024, 2048]
    se = zoo.create_model("se-resnet18", features_only=True, input_size=32)
    assert [t.shape[1] for t in se(torch.randn(1, 3, 32, 32))] == [64, 64, 128, 256, 512]
