"""VGG (Simonyan & Zisserman, 2014): the paper's configurations A, A-LRN, B, C, D and E."""
from zoo import Architecture, hookimpl

# name -> (configuration of the paper's Table 1, summary)
CONFIGS = {
    "vgg11": ("A", "VGG A, 11 weight layers"),
    "vgg11_lrn": ("A-LRN", "VGG A-LRN: A with local response normalisation after the first conv"),
    "vgg13": ("B", "VGG B, 13 weight layers"),
    "vgg16c": ("C", "VGG C, 16 weight layers with three 1x1 convs"),
    "vgg16": ("D", "VGG D, 16 weight layers"),
    "vgg19": ("E", "VGG E, 19 weight layers"),
}


@hookimpl
def architectures():
    specs = [
        Architecture(name, "zoo_vgg.vgg:vgg", f"VGG with your own layout (--set layout=64,M,128,M,...){suffix}",
                     options={"batch_norm": bn}, family="vgg", attention_sites=("conv", "stage"))
        for name, bn, suffix in (("vgg", False, ""), ("vgg_bn", True, ", batch norm"))
    ]
    for name, (config, summary) in CONFIGS.items():
        for bn in (False, True):
            specs.append(Architecture(
                name + ("_bn" if bn else ""), "zoo_vgg.vgg:vgg", summary + (", batch norm" if bn else ""),
                options={"config": config, "batch_norm": bn}, family="vgg", attention_sites=("conv", "stage"),
            ))
    return specs
