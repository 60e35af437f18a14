"""The VGG network, in torchvision's state-dict layout for the ImageNet shape."""
from __future__ import annotations

import re
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

# The paper's Table 1. A token is a conv ("64", or "256k1" for a 1x1 kernel), "M" (max-pool) or
# "LRN" (local response normalisation).
LAYOUTS = {
    "A": "64,M,128,M,256,256,M,512,512,M,512,512,M",
    "A-LRN": "64,LRN,M,128,M,256,256,M,512,512,M,512,512,M",
    "B": "64,64,M,128,128,M,256,256,M,512,512,M,512,512,M",
    "C": "64,64,M,128,128,M,256,256,256k1,M,512,512,512k1,M,512,512,512k1,M",
    "D": "64,64,M,128,128,M,256,256,256,M,512,512,512,M,512,512,512,M",
    "E": "64,64,M,128,128,M,256,256,256,256,M,512,512,512,512,M,512,512,512,512,M",
}
# Far beyond the paper's networks, near enough to refuse a typo or a crafted file before it allocates.
MAX_LAYERS, MAX_CHANNELS, MAX_KERNEL, MAX_WIDTH = 256, 16384, 15, 16
_CONV = re.compile(r"^(\d+)(?:k(\d+))?$")


def parse_layout(layout: str | Sequence[int | str]) -> list[tuple[str, int, int]]:
    """``"64,M,256k1"`` -> ``[("conv", 64, 3), ("pool", 0, 0), ("conv", 256, 1)]``."""
    tokens = layout.split(",") if isinstance(layout, str) else list(layout)
    if len(tokens) > MAX_LAYERS:
        raise ValueError(f"a VGG layout of {len(tokens)} layers; at most {MAX_LAYERS}")
    parsed = []
    for token in tokens:
        text = str(token).strip()
        if text.upper() == "M":
            parsed.append(("pool", 0, 0))
        elif text.upper() == "LRN":
            parsed.append(("lrn", 0, 0))
        elif match := _CONV.match(text):
            channels, kernel = int(match[1]), int(match[2] or 3)
            if not (0 < channels <= MAX_CHANNELS and 0 < kernel <= MAX_KERNEL and kernel % 2):
                raise ValueError(f"bad VGG layer {text!r}: 1 to {MAX_CHANNELS} channels and an odd kernel size "
                                f"up to {MAX_KERNEL}")
            parsed.append(("conv", channels, kernel))
        else:
            raise ValueError(f"bad VGG layer {text!r}: use 64 (3x3 conv), 256k1 (1x1 conv), M (max-pool) or LRN")
    if not any(kind == "conv" for kind, _, _ in parsed):
        raise ValueError("a VGG layout needs at least one conv layer")
    return parsed


def feature_layers(layers: list[tuple[str, int, int]], batch_norm: bool, in_chans: int, width: float,
                   attn_layer: Callable[[int], nn.Module] | None, attn_site: str) -> tuple[list[nn.Module], int]:
    """The feature extractor's modules for ``layers``, and the channels of its output."""
    modules: list[nn.Module] = []
    channels = in_chans
    for kind, out, kernel in layers:
        if kind == "pool":
            if attn_layer and attn_site == "stage":
                modules.append(attn_layer(channels))
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif kind == "lrn":
            modules.append(nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))  # AlexNet's
        else:
            out = max(1, round(out * width))
            modules.append(nn.Conv2d(channels, out, kernel, padding=kernel // 2))
            if batch_norm:
                modules.append(nn.BatchNorm2d(out))
            modules.append(nn.ReLU(inplace=True))
            if attn_layer and attn_site == "conv":
                modules.append(attn_layer(out))
            channels = out
    if attn_layer and attn_site == "stage" and layers[-1][0] != "pool":
        modules.append(attn_layer(channels))
    return modules, channels


class VGG(nn.Module):
    """``features`` then a head: one linear layer (CIFAR shape) or the 4096-4096 MLP (ImageNet)."""

    def __init__(
        self,
        layers: list[tuple[str, int, int]],
        batch_norm: bool,
        num_classes: int,
        in_chans: int,
        imagenet_shape: bool,
        mlp_head: bool,
        width: float,
        dropout: float,
        attn_layer: Callable[[int], nn.Module] | None,
        attn_site: str,
    ):
        super().__init__()
        placed: list[nn.Module] = []  # attention blocks keep their own layers and init: VGG's are its own

        def place(channels: int) -> nn.Module:
            placed.append(attn_layer(channels))
            return placed[-1]

        modules, channels = feature_layers(layers, batch_norm, in_chans, width, attn_layer and place, attn_site)
        self.features = nn.Sequential(*modules)
        pools = [i + 1 for i, m in enumerate(modules) if isinstance(m, nn.MaxPool2d)]
        self.stage_ends = pools if pools and pools[-1] == len(modules) else [*pools, len(modules)]
        self.num_classes, self.grad_checkpointing = num_classes, False
        pooled = 7 if imagenet_shape else 1
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        if mlp_head:
            hidden = max(1, round(4096 * width))
            self.classifier = nn.Sequential(
                nn.Linear(channels * pooled * pooled, hidden), nn.ReLU(True), nn.Dropout(dropout),
                nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )
        else:
            self.classifier = nn.Linear(channels * pooled * pooled, num_classes)
        # timm's names: the feature maps' channels, and the width of what the last layer reads
        self.num_features, self.head_hidden_size = channels, self.get_classifier().in_features
        foreign = {id(m) for block in placed for m in block.modules()}
        for m in self.modules():
            if id(m) in foreign:
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    # timm's model API: features, head, classifier, gradient checkpointing.
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.grad_checkpointing and self.training):
            return self.features(x)
        start = 0
        for end in self.stage_ends:  # stage by stage: each starts with a conv, whose input is kept
            x = checkpoint(self.features[start:end], x, use_reentrant=False)
            start = end
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        if isinstance(self.classifier, nn.Sequential):  # the MLP head: its hidden layers are the features
            x = self.classifier[:-1](x)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1] if isinstance(self.classifier, nn.Sequential) else self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """A new last layer for ``num_classes`` (0: none, the model returns its pre-logit features)."""
        self.num_classes = num_classes
        layer = nn.Linear(self.head_hidden_size, num_classes) if num_classes else nn.Identity()
        if isinstance(self.classifier, nn.Sequential):
            self.classifier[-1] = layer
        else:
            self.classifier = layer

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations stage by stage in the backward pass instead of keeping them: less memory."""
        self.grad_checkpointing = enable


def vgg(
    config: str = "D",
    batch_norm: bool = False,
    layout: str | Sequence[int | str] | None = None,
    width: float = 1.0,
    num_classes: int = 1000,
    in_chans: int = 3,
    input_size: int = 224,
    shape: str | None = None,
    dropout: float = 0.5,
    head: str | None = None,
    attn_layer: Callable[[int], nn.Module] | None = None,
    attn_site: str = "conv",
) -> VGG:
    """A VGG of the paper's ``config`` (A, A-LRN, B, C, D, E) or of your own ``layout``.

    ``shape`` is ``"cifar"`` (one linear layer after the last pool) or ``"imagenet"`` (the paper's
    4096-4096 head, torchvision's names); by default, CIFAR for inputs up to 64 pixels. ``head``
    overrides the shape's head: ``"linear"`` (one layer) or ``"mlp"`` (the paper's 4096-4096 with
    dropout; on the CIFAR shape after a global pool, 512-4096-4096-classes, as the lab's VGG likely had).
    """
    if layout is None:
        if config not in LAYOUTS:
            raise ValueError(f"unknown VGG config {config!r}; choose one of {', '.join(LAYOUTS)} or set a layout")
        layout = LAYOUTS[config]
    shape = shape or ("cifar" if input_size <= 64 else "imagenet")
    if shape not in ("cifar", "imagenet"):
        raise ValueError(f"unknown shape {shape!r}; choose cifar or imagenet")
    if not 0 < width <= MAX_WIDTH or num_classes <= 0 or in_chans <= 0:
        raise ValueError(f"width must be in (0, {MAX_WIDTH}], num_classes and in_chans positive")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    head = head or ("mlp" if shape == "imagenet" else "linear")
    if head not in ("linear", "mlp"):
        raise ValueError(f"unknown VGG head {head!r}; choose linear or mlp")
    return VGG(parse_layout(layout), batch_norm, num_classes, in_chans, shape == "imagenet", head == "mlp", width,
               dropout,
               attn_layer, attn_site)
