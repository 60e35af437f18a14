"""VGG, ResNet and SE against the numbers of the papers and torchvision (../shared/reference/oracles.md)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import zoo
from zoo.errors import UserError
from zoo.summary import count_parameters, summarize
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
CIFAR_PAPER_MILLIONS = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7}
# ResNet paper Table 1, "FLOPs" (multiply-adds) at 224x224.
PAPER_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


@pytest.mark.parametrize("name, expected", IMAGENET_PARAMS.items())
def test_imagenet_shape_parameter_counts(name, expected):
    assert count_parameters(zoo.create_model(name)) == expected


@pytest.mark.parametrize("name, expected", CIFAR_PARAMS.items())
def test_cifar_shape_parameter_counts(name, expected):
    assert count_parameters(zoo.create_model(name, num_classes=10, input_size=32)) == expected


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


def test_se_resnet50_costs_what_the_se_paper_says():
    base = summarize(zoo.create_model("resnet50", stride_in_1x1=True), 224, 3)["multiply_adds"]
    se = summarize(zoo.create_model("se-resnet50", stride_in_1x1=True), 224, 3)["multiply_adds"]
    # Paper: 3.86 G -> 3.87 G (+0.26 %). Our count leaves out SE's pooling and scaling (not multiply-adds
    # of a conv or linear layer), so the excitation FCs alone add about 0.07 %.
    assert round(base / 1e9, 2) == 3.86 and 0 < (se - base) / base < 0.0026


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


def test_resnet_depth_and_width_are_adjustable():
    model = zoo.create_model("resnet", layers=[1, 1, 1], width=0.125, num_classes=5, input_size=32)
    assert [len(model.layer1), len(model.layer3)] == [1, 1] and model.fc.in_features == 32
    assert not hasattr(model, "layer4")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize("ours, theirs", [("vgg16_bn", "vgg16_bn"), ("resnet50", "resnet50")])
def test_torchvision_checkpoints_load_strictly_and_agree(ours, theirs):
    import torchvision

    torch.manual_seed(0)
    reference = getattr(torchvision.models, theirs)(weights=None).eval()
    model = zoo.create_model(ours).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)


def _train_one_step(model, input_size=32, in_chans=3, classes=10):
    x, y = torch.randn(4, in_chans, input_size, input_size), torch.randint(0, classes, (4,))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))


def _se_blocks(model):
    return [m for m in model.modules() if type(m).__name__ == "SqueezeExcite"]


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


def test_timm_models_take_classes_and_channels():
    model = zoo.create_model("timm/resnet18", num_classes=3, in_chans=1).eval()
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 3)
    vit = zoo.create_model("timm/vit_tiny_patch16_224", num_classes=3, input_size=32).eval()  # built for one size
    assert vit(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert len([n for n in zoo.list_models("timm/*")]) > 1000


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
    assert result.returncode == 2 and result.stderr.strip() == "zoo: error: vgg16: width must be in (0, 16], num_classes and in_chans positive"


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


def test_features_only_gives_timms_feature_maps_per_stage():
    import timm

    ours, theirs = zoo.create_model("resnet50", features_only=True), timm.create_model("resnet50", features_only=True)
    x = torch.randn(1, 3, 224, 224)
    assert [t.shape for t in ours(x)] == [t.shape for t in theirs(x)]
    assert ours.feature_channels == theirs.feature_info.channels() == [64, 256, 512, 1024, 2048]
    se = zoo.create_model("se-resnet18", features_only=True, input_size=32)
    assert [t.shape[1] for t in se(torch.randn(1, 3, 32, 32))] == [64, 64, 128, 256, 512]


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
