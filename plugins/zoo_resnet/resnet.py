"""ResNet from basic and bottleneck blocks, in torchvision's state-dict layout."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

AttnLayer = Callable[[int], nn.Module]

# Far beyond any trained ResNet (ResNet-1202 has 600 blocks), near enough to refuse a typo or a
# crafted file before it allocates.
MAX_STAGES, MAX_BLOCKS, MAX_CHANNELS = 8, 2000, 16384
POOLS = ("avg", "max", "avgmax", "")


class GlobalPool(nn.Module):
    """timm's ``global_pool``: ``avg``, ``max``, ``avgmax`` (their mean) as (N, C), or ``''``: the maps."""

    def __init__(self, kind: str = "avg"):
        super().__init__()
        if kind not in POOLS:
            raise ValueError(f"unknown global_pool {kind!r}; choose avg, max, avgmax or '' (none)")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "avg":
            return x.mean((2, 3))
        if self.kind == "max":
            return x.amax((2, 3))
        if self.kind == "avgmax":
            return 0.5 * (x.mean((2, 3)) + x.amax((2, 3)))
        return x


class PadShortcut(nn.Module):
    """The paper's option A: subsample and pad channels with zeros; no parameters."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride, self.extra = stride, extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


def _shortcut(kind: str, in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    if kind == "pad":
        return PadShortcut(stride, out_ch - in_ch)
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int, shortcut: str, attn_layer: AttnLayer | None,
                 stride_in_1x1: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = attn_layer(planes) if attn_layer else None
        self.downsample = _shortcut(shortcut, in_ch, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:  # SE paper: on the residual branch, before the addition
            out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, shortcut: str, attn_layer: AttnLayer | None,
                 stride_in_1x1: bool = False):
        super().__init__()
        out_ch = planes * self.expansion
        # torchvision ("v1.5") strides the 3x3 conv; the paper (and timm's legacy SENet) the first 1x1.
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_ch, planes, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, s3, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.se = attn_layer(out_ch) if attn_layer else None
        self.downsample = _shortcut(shortcut, in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], width: int,
                 num_classes: int, in_chans: int, imagenet_stem: bool, shortcut: str,
                 attn_layer: AttnLayer | None, stride_in_1x1: bool, zero_init_residual: bool,
                 global_pool: str = "avg", drop_rate: float = 0.0):
        super().__init__()
        placed: list[nn.Module] = []  # attention blocks keep their own layers and init: the ResNet's are its own

        def place(channels: int) -> nn.Module:
            placed.append(attn_layer(channels))
            return placed[-1]

        if imagenet_stem:
            self.conv1 = nn.Conv2d(in_chans, width, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        in_ch, self.feature_channels = width, [width]
        for index, blocks in enumerate(layers):
            planes, stride = width * 2**index, 1 if index == 0 else 2
            stage = []
            for i in range(blocks):
                stage.append(block(in_ch, planes, stride if i == 0 else 1, shortcut, attn_layer and place, stride_in_1x1))
                in_ch = planes * block.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            self.feature_channels.append(in_ch)
        self.num_stages = len(layers)
        self.num_features = self.head_hidden_size = in_ch  # timm's names
        self.grad_checkpointing, self.drop_rate = False, drop_rate
        self.reset_classifier(num_classes, global_pool)  # avgpool: torchvision's name, whatever the pooling
        foreign = {id(m) for block in placed for m in block.modules()}
        for m in self.modules():
            if id(m) in foreign:
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():  # the blocks' own batch norms, never an attention block's
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    # timm's model API: features, head, classifier, gradient checkpointing.
    def stages(self) -> list[nn.Module]:
        return [getattr(self, f"layer{index + 1}") for index in range(self.num_stages)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages():
            x = checkpoint(stage, x, use_reentrant=False) if self.grad_checkpointing and self.training else stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.dropout(self.avgpool(x), self.drop_rate, self.training)  # drop_rate: before the classifier
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier for ``num_classes`` (0: none, the model returns its pooled features), and
        the pooling before it when ``global_pool`` is given (``''``: none, the feature maps)."""
        if global_pool is not None or not hasattr(self, "avgpool"):
            self.avgpool = GlobalPool("avg" if global_pool is None else global_pool)
        if num_classes and not self.avgpool.kind:
            raise ValueError("global_pool '' leaves the feature maps unpooled: it takes num_classes=0")
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in the backward pass instead of keeping them: less memory."""
        self.grad_checkpointing = enable


class ResNetFeatures(nn.Module):
    """The feature maps of a ResNet's stem and of each stage (strides 2, 4, 8, 16, 32 on the ImageNet
    shape), as timm's ``features_only=True`` returns them: a backbone for detection or segmentation."""

    def __init__(self, net: ResNet):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", *(f"layer{i + 1}" for i in range(net.num_stages))):
            self.add_module(name, getattr(net, name))
        self.num_stages, self.feature_channels = net.num_stages, net.feature_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        features = [x]
        x = self.maxpool(x)
        for index in range(self.num_stages):
            x = getattr(self, f"layer{index + 1}")(x)
            features.append(x)
        return features


def resnet(
    block: str = "basic",
    layers: Sequence[int] = (2, 2, 2, 2),
    width: float = 1.0,
    base_channels: int = 64,
    num_classes: int = 1000,
    in_chans: int = 3,
    input_size: int = 224,
    shape: str | None = None,
    shortcut: str = "conv",
    stride_in_1x1: bool = False,
    zero_init_residual: bool = False,
    features_only: bool = False,
    global_pool: str = "avg",
    drop_rate: float = 0.0,
    attn_layer: AttnLayer | None = None,
    attn_site: str = "block",
) -> ResNet | ResNetFeatures:
    """A ResNet of ``block`` ("basic" or "bottleneck") with ``layers`` blocks per stage.

    The first stage has ``base_channels * width`` channels, doubled at each later stage. ``shape`` is "cifar"
    (3x3 stride-1 stem, no max-pool) or "imagenet" (7x7 stride-2 stem and max-pool); by default,
    CIFAR for inputs up to 64 pixels. ``shortcut`` is "conv" (1x1 projection, the paper's option B)
    or "pad" (zero padding, option A). ``stride_in_1x1`` puts a bottleneck's stride on its first 1x1
    conv as in the paper, instead of on the 3x3 as torchvision does. ``features_only`` returns the
    feature maps of the stem and of every stage instead of class scores (timm's option). As in timm,
    ``num_classes=0`` gives the pooled features, ``global_pool`` is ``avg``, ``max``, ``avgmax`` or ``''``
    (unpooled maps, with ``num_classes=0``), and ``drop_rate`` is dropout before the classifier.
    """
    if block not in BLOCKS:
        raise ValueError(f"unknown ResNet block {block!r}; choose basic or bottleneck")
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers or any(not isinstance(n, int) or n < 1 for n in layers):
        raise ValueError(f"layers must be positive block counts per stage, got {layers!r}")
    if len(layers) > MAX_STAGES or sum(layers) > MAX_BLOCKS:
        raise ValueError(f"layers {layers!r}: at most {MAX_STAGES} stages and {MAX_BLOCKS} blocks in all")
    if not width > 0 or not isinstance(base_channels, int) or base_channels < 1 or num_classes < 0 or in_chans < 1:
        raise ValueError("width, base_channels (an integer) and in_chans must be positive, num_classes 0 or more")
    if not 0 <= drop_rate < 1:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
    if width * base_channels * 2 ** (len(layers) - 1) > MAX_CHANNELS:
        raise ValueError(f"width {width} and base_channels {base_channels} give more than {MAX_CHANNELS} channels")
    if shortcut not in ("conv", "pad"):
        raise ValueError(f"unknown shortcut {shortcut!r}; choose conv or pad")
    if attn_site != "block":
        raise ValueError(f"ResNet takes attention per block, not per {attn_site!r}")
    shape = shape or ("cifar" if input_size <= 64 else "imagenet")
    if shape not in ("cifar", "imagenet"):
        raise ValueError(f"unknown shape {shape!r}; choose cifar or imagenet")
    net = ResNet(BLOCKS[block], layers, max(1, round(base_channels * width)), num_classes, in_chans,
                 shape == "imagenet", shortcut, attn_layer, stride_in_1x1, zero_init_residual, global_pool, drop_rate)
    return ResNetFeatures(net) if features_only else net
