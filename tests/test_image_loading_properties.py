"""Property-based tests of image and mask loading: every input is read with its real range or refused.

Whatever mode, size or dtype comes in, ``load_image`` and ``load_mask`` either return values in [0, 1] (8-bit
inputs round-trip exactly) or raise ValueError/TypeError; nothing is clipped silently.
"""

from __future__ import annotations

import warnings

import numpy as np
import PIL.Image
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from blended_pipeline.image_io import load_image, load_mask

PIL_MODES = ["1", "L", "P", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA", "I", "I;16", "F"]
DTYPES = [np.uint8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_]
REFUSED = (ValueError, TypeError)


@st.composite
def pil_images(draw) -> PIL.Image.Image:
    mode = draw(st.sampled_from(PIL_MODES))
    size = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    image = PIL.Image.new(mode, size)
    image.frombytes(draw(st.binary(min_size=len(image.tobytes()), max_size=len(image.tobytes()))))
    if mode == "P" and draw(st.booleans()):
        image.info["transparency"] = draw(st.integers(0, 255))
    return image


@st.composite
def numeric_arrays(draw) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.sampled_from([(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4), (4, 4, 2), (3,)]))
    return draw(arrays(dtype, shape))


def assert_unit_range(tensor: torch.Tensor) -> None:
    assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all()
    assert tensor.min() >= 0 and tensor.max() <= 1


def loaded_or_refused(load, value):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return load(value)
        except REFUSED:
            return None


@settings(max_examples=80, deadline=None)
@given(pil_images())
def test_any_pil_image_loads_in_range_or_is_refused(image):
    tensor = loaded_or_refused(load_image, image)
    if image.mode not in ("I", "F"):  # every mode but 32-bit integers and floats has a known range: never refused
        assert tensor is not None, f"a {image.mode} image was refused"
    if tensor is not None:
        assert tensor.shape == (1, 3, image.height, image.width)
        assert_unit_range(tensor)
        if image.mode in ("L", "RGB"):
            pixels = np.asarray(image.convert("RGB"))
            assert np.array_equal((tensor[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), pixels)
    mask = loaded_or_refused(lambda m: load_mask(m, (image.height, image.width)), image)
    assert mask is None or (mask.dtype == torch.bool and mask.shape == (1, 1, image.height, image.width))


@settings(max_examples=80, deadline=None)
@given(numeric_arrays(), st.booleans())
def test_any_array_or_tensor_loads_in_range_or_is_refused(array, as_tensor):
    value = array
    if as_tensor:
        value = torch.from_numpy(np.moveaxis(array, -1, 0).copy() if array.ndim == 3 else array.copy())
    tensor = loaded_or_refused(load_image, value)
    if array.dtype in (np.uint8, np.uint16, np.bool_) and array.ndim >= 2 and array.shape[-1] != 2:
        assert tensor is not None, f"a {array.dtype} array of shape {array.shape} was refused"
    if tensor is not None:
        assert_unit_range(tensor)
        if array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] == 3:
            assert np.array_equal((tensor[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), array)


@pytest.mark.parametrize(
    "value",
    [
        np.full((8, 8, 3), np.nan, dtype=np.float32),
        np.full((8, 8, 3), 255.0, dtype=np.float32),
        np.full((8, 8, 3), 300, dtype=np.int64),
        PIL.Image.fromarray(np.full((8, 8), 70000, dtype=np.int32)),
        PIL.Image.fromarray(np.full((8, 8), 2.5, dtype=np.float32)),
    ],
)
def test_out_of_range_inputs_are_refused_with_what_they_are(value):
    with pytest.raises(ValueError, match=r"NaN|\[0, 1\]|dtype int64|mode I|mode F"):
        load_image(value)


def test_uint8_and_uint16_tensors_are_scaled_by_their_range():
    pixels = torch.arange(0, 256, dtype=torch.uint8).reshape(1, 16, 16).expand(3, -1, -1)
    assert torch.equal(load_image(pixels)[0], pixels.float() / 255)
    deep = np.arange(0, 65536, 256, dtype=np.uint16).reshape(16, 16)
    assert np.allclose(load_image(deep)[0, 0].numpy(), deep / 65535)
