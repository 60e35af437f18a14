"""VGG, ResNet and SE against the numbers of the papers and torchvision (../shared/reference/oracles.md)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import zoo
from zoo.base.errors import UserError
from zoo.models.summary import count_parameters, summarize
from zoo.testing import fresh_registry

from conftest import run_zoo


IMAGENET_PARAMS = {
    "vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg11_lrn": 132_863_336, "vgg13": 133_047_848,
    "vgg16c": 133_638_952, "vgg16": 138_357_544, "vgg16_bn": 138_365_992, "vgg19": 143_667_240,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808, "se-resnet50": 28_088_024,
}
CIFAR_PARAMS = {
    "vgg11_bn": 9_231_114, "vgg13_bn": 9_416_010, "vgg16_bn": 14_728_266, "vgg19_bn": 20_040_522,
    "resnet18": 11_173_962, "resnet34": 21_282_122, "resnet50": 23_520_842, "resnet101": 42_512_970,
    "resnet152": 58_156_618,
}
# ResNet paper section 4.2: millions of parameters of the 6n+2 CIFAR nets (option A shortcuts).
# ResNet paper Table 1, "FLOPs" (multiply-adds) at 224x224.
@pytest.mark.parametrize("name, expected", IMAGENET_PARAMS.items())
def test_imagenet_shape_parameter_counts(name, expected):
    assert count_parameters(zoo.create_model(name)) == expected


@pytest.mark.parametrize("name, expected", CIFAR_PARAMS.items())
def test_cifar_shape_parameter_counts(name, expected):
    assert count_parameters(zoo.create_model(name, num_classes=10, input_size=32)) == expected


def test_wrapping_is_refused_twice_and_with_bad_options():
    with pytest.raises(UserError, match="applied twice"):
        zoo.create_model("se-se-vgg16")
    with pytest.raises(UserError, match="placement 'stage' is not available for 'resnet18'"):
        zoo.create_model("se-resnet18", se={"placement": "stage"})
    with pytest.raises(UserError, match="reduction must be a positive integer"):
        zoo.create_model("se-resnet18", se={"reduction": 0})
    with pytest.raises(UserError, match="has no option 'depth'"):
        zoo.create_model("se-resnet18", se={"depth": 3})


def test_two_wrappers_for_one_attention_slot_are_refused():
    class Gate:
        @zoo.hookimpl
        def wrappers(self):
            return [zoo.Wrapper("gate", lambda build, arch: build(attn_layer=nn.Identity, attn_site="block"))]

    registry = fresh_registry({"gate": Gate()}, installed=("resnet", "se"))
    with pytest.raises(UserError, match="wrappers set attn_layer, attn_site of 'resnet20' twice"):
        zoo.create_model("gate-se-resnet20", registry=registry)


def test_wrapped_state_dict_reloads_into_a_rebuilt_model():
    model = zoo.create_model("se-resnet20", se={"reduction": 4})
    rebuilt = zoo.create_model(model.zoo_config["model"], **model.zoo_config["options"])
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.eval()(x), rebuilt.eval()(x))


def test_shape_follows_input_size_and_can_be_overridden():
    assert isinstance(zoo.create_model("resnet18", input_size=32).maxpool, nn.Identity)
    assert isinstance(zoo.create_model("resnet18").maxpool, nn.MaxPool2d)
    assert isinstance(zoo.create_model("resnet18", input_size=32, shape="imagenet").maxpool, nn.MaxPool2d)
    assert isinstance(zoo.create_model("vgg11", input_size=32).classifier, nn.Linear)
    assert isinstance(zoo.create_model("vgg11", input_size=32, shape="imagenet", width=0.0625).classifier,
                      nn.Sequential)


def test_info_command_reports_parameters_and_multiply_adds():
    result = run_zoo("info", "resnet18", "--json")
    report = json.loads(result.stdout)
    assert report["parameters"] == 11_689_512 and report["output"] == [1000]
    assert 1.8e9 < report["multiply_adds"] < 1.9e9
    assert {"layer1.0", "fc"} <= {layer["name"] for layer in report["layers"]}
    result = run_zoo("info", "se-vgg", "--input-size", "32", "--num-classes", "10", "--set", "layout=16,M,32,M",
                     "--set", "se.placement=stage", "--json")
    report = json.loads(result.stdout)
    assert report["output"] == [10] and report["options"]["layout"] == "16,M,32,M"
    text = run_zoo("info", "vgg11", "--input-size", "32").stdout
    assert "multiply-adds" in text and "parameters     9,733,480" in text  # 1000 classes
    result = run_zoo("info", "vgg16", "--set", "width=-1")
    assert result.returncode == 2 and result.stderr.strip() == "zoo: error: architecture 'vgg16': width must be in (0, 16], num_classes and in_chans positive"


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn", "se-vgg11", "se-resnet20"])
def test_timms_model_api_and_checkpointing_keep_the_gradients(name):
    torch.manual_seed(0)
    model = zoo.create_model(name, num_classes=10, input_size=32)
    x = torch.randn(4, 3, 32, 32)
    model(x).logsumexp(1).sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing()
    model(x).logsumexp(1).sum().backward()
    assert all(torch.allclose(p.grad, g, atol=1e-5) for p, g in zip(model.parameters(), plain))
    from zoo.testing import _check_model_api

    _check_model_api(model, 32)
    assert model.num_classes == 5 and model.get_classifier().out_features == 5


def test_info_counts_per_layer_and_attention_with_torchs_flop_counter(tmp_path):
    report = summarize(zoo.create_model("resnet18"), 224, 3, depth=1)
    assert report["multiply_adds"] == pytest.approx(1.82e9, rel=0.01)  # the paper's 1.8 GFLOPs
    assert sum(layer["multiply_adds"] for layer in report["layers"]) == report["multiply_adds"]
    conv1 = report["layers"][0]
    assert (conv1["name"], conv1["multiply_adds"], conv1["activation_bytes"]) == ("conv1", 118_013_952, 64 * 112 * 112 * 4)
    vit = summarize(zoo.create_model("timm/vit_tiny_patch16_224"), 224, 3)  # attention's matrix products too
    assert vit["multiply_adds"] == pytest.approx(1.08e9, rel=0.02)  # timm: 1.1 GMACs; 0.9 without attention
    deep = json.loads(run_zoo("info", "resnet18", "--depth", "3", "--json").stdout)["layers"]
    assert "layer1.0.conv1" in {layer["name"] for layer in deep}


def test_se_resnet_state_dicts_match_timms_at_the_bottleneck_depths_and_differ_only_in_stage_one_below():
    """As docs/pretrained.md says: timm rounds an SE block's reduced width up to a multiple of 8."""
    timm = pytest.importorskip("timm")

    def shapes(model):
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    for depth in (18, 50):
        ours, theirs = shapes(zoo.create_model(f"se-resnet{depth}")), shapes(timm.create_model(f"seresnet{depth}"))
        assert ours.keys() == theirs.keys()
        differ = sorted({k.split(".se.")[0] for k in ours if ours[k] != theirs[k]})
        assert differ == ([] if depth == 50 else ["layer1.0", "layer1.1"])


def test_resnet_takes_timms_head_options_headless_pooled_any_way_and_traceable():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = zoo.create_model("resnet18", num_classes=0, input_size=32).eval()
    maps = model.forward_features(x)
    assert model(x).shape == (2, 512) and torch.allclose(model(x), maps.mean((2, 3)))  # pooled features
    for pool, expected in (("max", maps.amax((2, 3))), ("avgmax", 0.5 * (maps.mean((2, 3)) + maps.amax((2, 3)))),
                           ("", maps)):
        model.reset_classifier(0, pool)
        assert torch.allclose(model(x), expected)
    with pytest.raises(ValueError, match="it takes num_classes=0"):  # the pooling stays as last set, as timm's
        model.reset_classifier(7)
    model.reset_classifier(7, "avg")
    assert model(x).shape == (2, 7) and model.get_classifier().out_features == 7
    wrapped = zoo.create_model("se-resnet20", num_classes=10, global_pool="avgmax", drop_rate=0.5, input_size=32)
    wrapped.train()
    assert not torch.equal(wrapped(x), wrapped(x))  # dropout before the classifier, in training only
    wrapped.eval()
    assert torch.equal(wrapped(x), wrapped(x))
    for name in ("resnet18", "se-resnet20"):
        torch.fx.symbolic_trace(zoo.create_model(name, global_pool="max", input_size=32))
    with pytest.raises(zoo.UserError, match="global_pool '' leaves the feature maps unpooled"):
        zoo.create_model("resnet18", global_pool="")
    with pytest.raises(zoo.UserError, match="unknown global_pool 'mean'"):
        zoo.create_model("resnet18", global_pool="mean")
