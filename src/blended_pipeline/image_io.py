"""Images and masks in, images out.

Inputs may be PIL images of any mode with a known range (8- and 16-bit, 32-bit integers up to 65535, floats in
[0, 1], palette, CMYK, ...), numpy arrays (H, W[, C]) or torch tensors ((C, )H, W or (1, C, H, W)) of uint8,
uint16, bool or floats in [0, 1]. Each is read with its real range or refused with a message naming what it is;
nothing is clipped silently. An alpha channel is ignored (a warning says so once): the colours are edited as
stored. Inside, images are (1, 3, H, W) float32 in [0, 1] and masks (1, 1, H, W) bool, True = edit. A mask is
averaged over its colour channels and thresholded at 0.5 of its range (grey anti-aliasing decides by majority).
"""

from __future__ import annotations

import warnings

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from blended_pipeline.settings import InputWarning, OutputType, check_mask_size

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor


def load_image(image: ImageInput) -> torch.Tensor:
    """An RGB image as (1, 3, H, W) float32 in [0, 1]; alpha is ignored (with a warning), grayscale is repeated."""
    tensor = _as_float_tensor(image, "image")
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    elif tensor.shape[1] == 4:
        warnings.warn("image has 4 channels; the fourth (alpha) is ignored", InputWarning, stacklevel=2)
        tensor = tensor[:, :3]
    if tensor.shape[1] != 3:
        raise ValueError(f"image must have 1, 3 or 4 channels, got {tensor.shape[1]}")
    return tensor.contiguous()


def load_source(image: ImageInput) -> torch.Tensor:
    """The input as the crop path keeps it: an 8-bit RGB or gray image as (1, 3, H, W) uint8 (its own bytes; a
    large image is then not copied as floats), any other as ``load_image``."""
    if isinstance(image, PIL.Image.Image) and image.mode in ("RGB", "L"):
        image = np.asarray(image)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and (image.ndim == 2 or image.shape[2:] == (3,)):
        with warnings.catch_warnings():  # PIL's arrays are read-only; the source is only ever read
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            pixels = torch.from_numpy(np.ascontiguousarray(image))
        return pixels.reshape(*image.shape[:2], -1).permute(2, 0, 1)[None].expand(-1, 3, -1, -1)
    return load_image(image)


def load_mask(mask: ImageInput, image_size: tuple[int, int]) -> torch.Tensor:
    """A mask as (1, 1, H, W) bool at ``image_size`` (H, W); white / 1 = edit, black / 0 = keep.

    A mask of another size but the image's aspect ratio is resized (nearest); any other size is an error.
    """
    if isinstance(mask, PIL.Image.Image) and mask.mode in ("L", "1") and mask.size == image_size[::-1]:
        array = np.asarray(mask)  # read as bytes: a large mask is not copied as floats
        return _non_empty(torch.from_numpy(array if array.dtype == bool else array > 127)[None, None])
    tensor = _as_float_tensor(mask, "mask_image")
    colour_channels = {2: 1, 4: 3}.get(tensor.shape[1], tensor.shape[1])  # an alpha channel is not the mask
    tensor = tensor[:, :colour_channels].mean(dim=1, keepdim=True)
    height, width = tensor.shape[-2:]
    check_mask_size(width, height, image_size[1], image_size[0])
    if (height, width) != image_size:
        tensor = F.interpolate(tensor, size=image_size, mode="nearest")
    return _non_empty(tensor > 0.5)


def _non_empty(binary: torch.Tensor) -> torch.Tensor:
    if not binary.any():
        raise ValueError("mask_image is empty (all pixels are 0 = keep): there is nothing to edit; white = edit")
    return binary


def to_output(images: torch.Tensor, output_type: OutputType) -> list[PIL.Image.Image] | np.ndarray | torch.Tensor:
    """(N, 3, H, W) in [0, 1] as PIL images, a (N, H, W, 3) float array, or the tensor itself; 8-bit images
    (uint8, for PIL images only) as they are."""
    if output_type == "pt":
        return images.contiguous()
    array = images.permute(0, 2, 3, 1).cpu().numpy()
    if output_type == "np":
        return array
    if array.dtype != np.uint8:
        array = np.round(array * 255).astype(np.uint8)
    return [PIL.Image.fromarray(a) for a in array]


def _as_float_tensor(value: ImageInput, name: str) -> torch.Tensor:
    """(1, C, H, W) float32 in [0, 1], read with the input's real range; anything else is refused."""
    if isinstance(value, PIL.Image.Image):
        array = _pil_array(value, name)
        return torch.from_numpy(array).reshape(*array.shape[:2], -1).permute(2, 0, 1)[None]
    if isinstance(value, np.ndarray):
        if value.ndim == 2:
            value = value[..., None]
        if value.ndim != 3:
            raise ValueError(f"{name} as a numpy array must be (H, W) or (H, W, C), got shape {value.shape}")
        return torch.from_numpy(_unit_range(value, name)).permute(2, 0, 1)[None]
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.ndim == 2:
            tensor = tensor[None]
        if tensor.ndim == 3:
            tensor = tensor[None]
        if tensor.ndim != 4 or tensor.shape[0] != 1:
            raise ValueError(f"{name} as a tensor must be (H, W), (C, H, W) or (1, C, H, W), got {tuple(value.shape)}")
        if tensor.dtype.is_floating_point:
            tensor = tensor.float()
        return torch.from_numpy(_unit_range(tensor.numpy(), name))
    raise TypeError(f"{name} must be a PIL image, a numpy array or a torch tensor, got {type(value).__name__}")


def _pil_array(image: PIL.Image.Image, name: str) -> np.ndarray:
    """(H, W[, C]) float32 in [0, 1] from any PIL mode the method can read; alpha is ignored, with a warning."""
    mode = image.mode
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.float32) / 65535
    if mode == "I":  # how PIL opens 16-bit grayscale PNG and TIFF files
        array = np.asarray(image)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError(
                f"{name} is a 32-bit integer image (PIL mode I) with values in [{array.min()}, {array.max()}]; "
                "values 0-65535 (16-bit) are read: convert it to 8 or 16 bits"
            )
        return array.astype(np.float32) / 65535
    if mode == "F":
        return _unit_range(np.asarray(image, dtype=np.float32), f"{name} (a float image, PIL mode F)")
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency" in image.info):
        warnings.warn(
            f"{name} has an alpha channel (PIL mode {mode}); it is ignored: the colours are edited as stored, "
            "not composited on any background (flatten the image first to choose one)",
            InputWarning,
            stacklevel=4,
        )
        return np.asarray(image.convert("LA" if mode in ("LA", "La") else "RGBA"))[..., :-1].astype(np.float32) / 255
    if mode == "1":
        return np.asarray(image).astype(np.float32)
    if mode in ("L", "RGB"):
        return np.asarray(image).astype(np.float32) / 255
    try:
        return np.asarray(image.convert("RGB")).astype(np.float32) / 255  # P, CMYK, YCbCr, RGBX, HSV
    except ValueError as error:
        raise ValueError(f"{name} has PIL mode {mode}, which cannot be read as RGB; convert it to RGB first") from error


def _unit_range(array: np.ndarray, name: str) -> np.ndarray:
    """float32 in [0, 1]: uint8 / 255, uint16 / 65535, bool as 0 / 1, floats as they are if finite and in range."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} has dtype {array.dtype}; expected uint8, uint16, bool, or floats in [0, 1]")
    array = array.astype(np.float32)
    if array.size and not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values; expected floats in [0, 1]")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(
            f"{name} floats must lie in [0, 1], got [{array.min():.3g}, {array.max():.3g}] "
            "(integers: pass uint8 or uint16, which are scaled by their range)"
        )
    return array
