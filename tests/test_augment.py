"""Projective augmentations (``augment``): the views CLIP judges, their layout, gradients and generators."""

from __future__ import annotations

import pytest
import torch
from helpers import images

from blended_pipeline import ProjectiveAugmentation
from blended_pipeline.augment import warp


def test_augmentation_layout_first_view_untouched_and_reproducible():
    x = images()
    augment = ProjectiveAugmentation()
    views = augment(x, 8, torch.Generator().manual_seed(0))
    assert views.shape == (16, 3, 16, 16)
    assert torch.equal(views[:2], x)
    assert torch.equal(views, augment(x, 8, torch.Generator().manual_seed(0)))
    assert not torch.equal(views, augment(x, 8, torch.Generator().manual_seed(1)))
    assert not torch.allclose(views[2:4], x)


def test_augmentation_is_differentiable():
    x = images().requires_grad_(True)
    ProjectiveAugmentation()(x, 4, torch.Generator().manual_seed(0))[2:].pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_augmentation_with_probability_zero_is_identity():
    x = images()
    augment = ProjectiveAugmentation(affine_p=0.0, perspective_p=0.0)
    assert torch.allclose(augment(x, 3, torch.Generator().manual_seed(0)), x.repeat(3, 1, 1, 1), atol=1e-6)


def test_augmentation_uses_one_generator_per_image():
    x = images()
    augment = ProjectiveAugmentation()
    pair = augment(x, 4, [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)])
    alone = augment(x[:1], 4, [torch.Generator().manual_seed(5)])
    assert torch.equal(pair[0::2], alone)
    with pytest.raises(ValueError, match="one per image"):
        augment(x, 4, [torch.Generator()])


def test_warp_translation_moves_content():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 2, 2] = 1
    shift = torch.tensor([[[1.0, 0.0, -0.25], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # 1/8 of the width
    moved = warp(x, shift)
    assert moved[0, 0, 2, 3] == pytest.approx(1.0)
