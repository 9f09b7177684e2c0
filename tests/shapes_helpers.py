"""Helpers only the tests use: edits whose outcome is known without running a model."""

from __future__ import annotations

import numpy as np

from blended_pipeline.shapes.edits import EditCase
from blended_pipeline.shapes.world import PALETTE, SHAPE_SIZE_RANGE, shape_mask


def ideal_edit(
    case: EditCase, rng: np.random.Generator, shape: str | None = None, colour: str | None = None
) -> np.ndarray:
    """The case's image with a shape drawn inside its box: what a perfect edit could look like."""
    left, top, right, bottom = case.box
    side = right - left
    resolution = case.image.shape[0]
    size = min(rng.uniform(*SHAPE_SIZE_RANGE) * resolution, side - 1)
    center = tuple(rng.uniform(low + size / 2, low + side - size / 2) for low in (left, top))
    image = case.image.copy()
    image[shape_mask(shape or case.shape, center, size, resolution) & case.mask] = PALETTE[colour or case.colour]
    return image
