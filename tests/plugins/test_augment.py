"""The augmentation plugin (zoo_augment): batched, per-sample random, labels kept aligned."""
from __future__ import annotations

import pytest
import torch

import zoo


def _augmentation(name, **options):
    return zoo.default_registry().get("aug", name).load()(**options)


@pytest.mark.parametrize("name, options", [("hflip", {}), ("crop", {"padding": 4}), ("rotate", {"degrees": 30}),
                                           ("cutout", {"size": 8}), ("jitter", {"strength": 0.4})])
def test_augmentations_keep_shape_dtype_labels_and_differ_per_sample(name, options):
    torch.manual_seed(0)
    image = torch.rand(1, 3, 32, 32)
    x, y = image.repeat(64, 1, 1, 1), torch.arange(64)
    out, labels = _augmentation(name, **options)(x.clone(), y)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.equal(labels, y)
    distinct = {tuple(o.flatten()[:2048].tolist()) for o in out}
    assert len(distinct) > 1  # per-sample randomness: identical inputs, different outputs


def test_label_alignment_survives_geometric_augmentations():
    # Image i is filled with the value of its label: any mix-up of samples would show.
    y = torch.randperm(16)
    x = (y.float() / 16).view(-1, 1, 1, 1).expand(16, 3, 8, 8).contiguous()
    for name in ("hflip", "crop", "rotate", "cutout"):
        out, labels = _augmentation(name)(x.clone(), y)
        for image, label in zip(out, labels):
            values = image.unique()
            assert set(values.tolist()) <= {0.0, float(label) / 16} or torch.allclose(values.max(), label.float() / 16)


def test_hflip_flips_exactly_the_images_it_draws_and_normalising_is_the_textbook_formula():
    x = torch.rand(16, 3, 8, 8)
    torch.manual_seed(3)
    expected = torch.where((torch.rand(16) < 0.5)[:, None, None, None], x.flip(3), x)
    torch.manual_seed(3)
    out, _ = _augmentation("hflip")(x.clone(), torch.arange(16))
    assert torch.equal(out, expected) and 0 < (out != x).flatten(1).any(1).sum() < 16
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    textbook = (images / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(zoo.Normalize(mean, std)(images), textbook)


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_batch_mixing_augmentations_mix_labels(name):
    torch.manual_seed(1)
    x = torch.rand(32, 3, 16, 16)
    y = torch.nn.functional.one_hot(torch.arange(32) % 10, 10).float()
    out, soft = _augmentation(name)(x, y)
    assert out.shape == x.shape and soft.shape == (32, 10)
    torch.testing.assert_close(soft.sum(1), torch.ones(32))
    assert (soft.max(1).values < 1).any()
