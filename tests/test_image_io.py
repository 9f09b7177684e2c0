"""Image and mask loading (``image_io``): the masks refused, each with its reason. (Property-based tests of the
same loaders are in ``test_image_loading_properties.py``.)"""

from __future__ import annotations

import numpy as np
import pytest

from blended_pipeline.image_io import load_mask


def test_load_mask_errors():
    with pytest.raises(ValueError, match="empty"):
        load_mask(np.zeros((4, 4), np.uint8), (4, 4))
    with pytest.raises(ValueError, match="aspect ratio"):
        load_mask(np.full((4, 8), 255, np.uint8), (4, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_mask(np.full((4, 4), 3.0, np.float32), (4, 4))
