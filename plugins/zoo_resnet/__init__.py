"""ResNet (He et al., 2015): the ImageNet networks of Table 1 and the CIFAR networks of section 4.2."""
from zoo import Architecture, hookimpl

IMAGENET = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
            101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}
CIFAR_DEPTHS = (20, 32, 44, 56, 110)  # 6n+2 layers, 16/32/64 channels


@hookimpl
def architectures():
    specs = [
        Architecture("resnet", "zoo_resnet.resnet:resnet", "ResNet with your own stages (--set layers=[2,2,2,2])",
                     family="resnet", attention_sites=("block",)),
    ]
    for depth, (block, layers) in IMAGENET.items():
        specs.append(Architecture(
            f"resnet{depth}", "zoo_resnet.resnet:resnet", f"ResNet-{depth}, {block} blocks {list(layers)}",
            options={"block": block, "layers": layers}, family="resnet", attention_sites=("block",),
        ))
    for depth in CIFAR_DEPTHS:
        n = (depth - 2) // 6
        specs.append(Architecture(
            f"resnet{depth}", "zoo_resnet.resnet:resnet",
            f"CIFAR ResNet-{depth} of the paper: 3x{n} basic blocks, 16/32/64 channels",
            options={"block": "basic", "layers": (n, n, n), "base_channels": 16, "shape": "cifar", "shortcut": "pad",
                     "num_classes": 10},
            family="resnet", attention_sites=("block",), input_size=32,
        ))
    return specs
