"""zoo-eca: hooks only; torch is imported by the factories when something is built."""
from zoo import Architecture, Augmentation, Wrapper, hookimpl


@hookimpl
def wrappers():
    return [Wrapper("eca", "zoo_eca.blocks:wrap", "Efficient Channel Attention (ECA-Net): 1-D conv over channels, "
                                                  "no reduction (--set eca.kernel_size=5)")]


@hookimpl
def architectures():
    return [Architecture("lenet5", "zoo_eca.lenet:lenet5", "LeNet-5 (LeCun et al., 1998) for 32x32 images",
                         family="lenet", input_size=32)]


@hookimpl
def augmentations():
    return [Augmentation("noise", "zoo_eca.noise:GaussianNoise", "noise=SIGMA: add Gaussian noise (0.05)",
                         param="sigma")]
