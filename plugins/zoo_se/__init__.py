"""Squeeze-and-Excitation (Hu et al., 2017) as a wrapper: ``se-resnet50``, ``se-vgg16``."""
from zoo import Wrapper, hookimpl


@hookimpl
def wrappers():
    return [Wrapper("se", "zoo_se.se:wrap", "Squeeze-and-Excitation blocks, reduction r=16 (--set se.reduction=8, "
                                            "se.placement=stage for SE-VGG after every stage)")]
