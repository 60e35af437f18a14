"""Batched augmentations with per-sample randomness: whole batches on the device, no PIL."""
from zoo import Augmentation, hookimpl

_M = "zoo_augment.ops:"


@hookimpl
def augmentations():
    return [
        # the default augmentations (pytorch-cifar's recipe): crop=4, then hflip
        Augmentation("crop", _M + "RandomCrop", "crop=N: shift, by padding N pixels (4) and cropping at a random offset",
                     param="padding", default=True),
        Augmentation("hflip", _M + "HFlip", "hflip=P: flip horizontally with probability P (0.5)", param="p",
                     default=True),
        Augmentation("rotate", _M + "Rotate", "rotate=D: rotate by a random angle in [-D, D] degrees (15)", param="degrees"),
        Augmentation("cutout", _M + "Cutout", "cutout=N: zero a random square of side N (8)", param="size"),
        Augmentation("jitter", _M + "ColorJitter", "jitter=S: random brightness, contrast, saturation within +-S (0.4)",
                     param="strength"),
        Augmentation("mixup", _M + "Mixup", "mixup=A: blend pairs of images and labels, weights ~ Beta(A, A) (0.2)",
                     param="alpha", mixes_labels=True),
        Augmentation("cutmix", _M + "CutMix", "cutmix=A: paste a box of another image, labels mixed by area (1.0)",
                     param="alpha", mixes_labels=True),
    ]
