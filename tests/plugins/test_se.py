"""The SE wrapper plugin (zoo_se): SE-VGG in both placements, SE-ResNet as the SE paper, surgery on timm models."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo.models.summary import summarize


def _se_blocks(model):
    return [m for m in model.modules() if type(m).__name__ == "SqueezeExcite"]


def _train_one_step(model, input_size=32, in_chans=3, classes=10):
    x, y = torch.randn(4, in_chans, input_size, input_size), torch.randint(0, classes, (4,))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))


def test_se_resnet50_costs_what_the_se_paper_says():
    base = summarize(zoo.create_model("resnet50", stride_in_1x1=True), 224, 3)["multiply_adds"]
    se = summarize(zoo.create_model("se-resnet50", stride_in_1x1=True), 224, 3)["multiply_adds"]
    # Paper: 3.86 G -> 3.87 G (+0.26 %). Our count leaves out SE's pooling and scaling (not multiply-adds
    # of a conv or linear layer), so the excitation FCs alone add about 0.07 %.
    assert round(base / 1e9, 2) == 3.86 and 0 < (se - base) / base < 0.0026


@pytest.mark.parametrize("placement, count", [("conv", 13), ("stage", 5)])
def test_se_vgg16_in_both_placements_builds_and_trains(placement, count):
    model = zoo.create_model("se-vgg16", num_classes=10, input_size=32, width=0.125, se={"placement": placement})
    assert len(_se_blocks(model)) == count
    _train_one_step(model)


def test_se_resnet_follows_the_se_paper():
    model = zoo.create_model("se-resnet50", se={"reduction": 16})
    block = model.layer1[0]
    assert block.se.fc1.out_channels == 256 // 16 and block.se.fc1.in_channels == block.bn3.num_features
    assert len(_se_blocks(model)) == 16


def test_se_wrapped_timm_model_trains_by_surgery():
    plain = zoo.create_model("timm/resnet18", num_classes=10)
    model = zoo.create_model("se-timm/resnet18", num_classes=10)
    assert len(_se_blocks(model)) == sum(isinstance(m, nn.Conv2d) for m in plain.modules())
    _train_one_step(model)
