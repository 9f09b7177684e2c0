"""The tests' fixtures: a tiny pipeline and a small image and mask; what they build comes from ``helpers``."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from helpers import tiny_pipeline

from blended_pipeline import BlendedDiffusionPipeline


@pytest.fixture
def pipe() -> BlendedDiffusionPipeline:
    return tiny_pipeline()


@pytest.fixture
def image() -> PIL.Image.Image:
    """A 40x24 (WxH) image: not square and not the UNet's size, with structure in it."""
    rng = np.random.default_rng(0)
    return PIL.Image.fromarray(rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8))


@pytest.fixture
def mask() -> PIL.Image.Image:
    array = np.zeros((24, 40), dtype=np.uint8)
    array[6:18, 10:26] = 255
    return PIL.Image.fromarray(array)
