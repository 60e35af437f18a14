"""The torchvision plugin (zoo_torchvision): torchvision's checkpoints in zoo's VGG and ResNet."""
from __future__ import annotations

import pytest
import torch

import zoo


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
