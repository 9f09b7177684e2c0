"""Images and masks in, images out.

Inputs may be PIL images, numpy arrays (H, W, C) of uint8 or floats in [0, 1], or torch tensors (C, H, W) or
(1, C, H, W) in [0, 1]. Inside, images are (1, 3, H, W) float32 in [0, 1] and masks (1, 1, H, W) bool,
True = edit. A mask is thresholded at 0.5 of its range (so grey anti-aliasing decides by majority).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor
OutputType = Literal["pil", "np", "pt"]
OUTPUT_TYPES = ("pil", "np", "pt")


def load_image(image: ImageInput) -> torch.Tensor:
    """An RGB image as (1, 3, H, W) float32 in [0, 1]; RGBA drops alpha, grayscale is repeated."""
    tensor = _as_float_tensor(image, "image", mode="RGB")
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    elif tensor.shape[1] == 4:
        tensor = tensor[:, :3]
    if tensor.shape[1] != 3:
        raise ValueError(f"image must have 1, 3 or 4 channels, got {tensor.shape[1]}")
    return tensor.contiguous()


def load_mask(mask: ImageInput, image_size: tuple[int, int]) -> torch.Tensor:
    """A mask as (1, 1, H, W) bool at ``image_size`` (H, W); white / 1 = edit, black / 0 = keep.

    A mask of another size but the image's aspect ratio is resized (nearest); any other size is an error.
    """
    tensor = _as_float_tensor(mask, "mask_image", mode="L").mean(dim=1, keepdim=True)
    height, width = tensor.shape[-2:]
    if abs(height * image_size[1] - width * image_size[0]) > max(height, width, *image_size) // 2:
        raise ValueError(
            f"mask_image is {width}x{height} (WxH) but image is {image_size[1]}x{image_size[0]}: the mask must have "
            "the image's size or at least its aspect ratio"
        )
    if (height, width) != image_size:
        tensor = F.interpolate(tensor, size=image_size, mode="nearest")
    binary = tensor > 0.5
    if not binary.any():
        raise ValueError("mask_image is empty (all pixels are 0 = keep): there is nothing to edit; white = edit")
    return binary


def feather(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """A soft (1, 1, H, W) float mask: 1 inside, a Gaussian ramp (sigma ``radius / 2``) outward, exactly 0 beyond."""
    hard = mask.float()
    if radius <= 0:
        return hard
    sigma, size = radius / 2, 2 * int(math.ceil(radius)) + 1
    offsets = torch.arange(size, dtype=torch.float32) - size // 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    blurred = F.conv2d(F.pad(hard, [size // 2] * 4, mode="replicate"), kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1))
    return torch.maximum(hard, blurred)


def crop_box(mask: torch.Tensor, resolution: int, margin: float) -> tuple[int, int, int, int]:
    """The square (top, left, bottom, right) to edit an image larger than the model on.

    The mask's bounding box, grown by ``margin`` times its longer side on every side for context, made square by
    growing within the image. The whole image when it is no larger than the model, or too narrow for a square.
    """
    height, width = mask.shape[-2:]
    if max(height, width) <= resolution:
        return 0, 0, height, width
    rows, cols = torch.nonzero(mask[0, 0] > 0, as_tuple=True)
    top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    side = int(round(max(bottom - top, right - left) * (1 + 2 * margin)))
    side = max(side, resolution)
    if side > min(height, width):
        return 0, 0, height, width
    top = min(max(0, (top + bottom - side) // 2), height - side)
    left = min(max(0, (left + right - side) // 2), width - side)
    return top, left, top + side, left + side


def to_resolution(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The image in [-1, 1] and the mask as floats in [0, 1] at the model's resolution.

    A model-resolution pixel takes the largest mask value under it, so no masked input pixel is left out.
    """
    mask = mask.float()
    if image.shape[-2:] != size:
        image = F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        mask = F.adaptive_max_pool2d(mask, size) if mask.shape[-2] >= size[0] else F.interpolate(mask, size=size)
    return image * 2 - 1, mask


def paste(edited: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Edited images (N, 3, h, w) in [-1, 1], resized to the input's size, mixed into it by the (soft) mask.

    Returns (N, 3, H, W) in [0, 1]; where the mask is 0, the pixels are exactly the input's.
    """
    edited = (edited.float() + 1) / 2
    if edited.shape[-2:] != image.shape[-2:]:
        edited = F.interpolate(edited, size=image.shape[-2:], mode="bicubic", align_corners=False)
    image, mask = image.to(edited.device), mask.to(edited.device).float()
    return torch.where(mask > 0, image + mask * (edited.clamp(0, 1) - image), image)


def to_output(images: torch.Tensor, output_type: OutputType) -> list[PIL.Image.Image] | np.ndarray | torch.Tensor:
    """(N, 3, H, W) in [0, 1] as PIL images, a (N, H, W, 3) float array, or the tensor itself."""
    if output_type == "pt":
        return images
    array = images.permute(0, 2, 3, 1).cpu().numpy()
    if output_type == "np":
        return array
    return [PIL.Image.fromarray(np.round(a * 255).astype(np.uint8)) for a in array]


def _as_float_tensor(value: ImageInput, name: str, mode: str) -> torch.Tensor:
    """(1, C, H, W) float32 in [0, 1]."""
    if isinstance(value, PIL.Image.Image):
        if value.mode not in ("RGB", "L"):
            value = value.convert(mode)
        array = np.asarray(value)
        return torch.from_numpy(array.astype(np.float32) / 255).reshape(*array.shape[:2], -1).permute(2, 0, 1)[None]
    if isinstance(value, np.ndarray):
        if value.ndim == 2:
            value = value[..., None]
        if value.ndim != 3:
            raise ValueError(f"{name} as a numpy array must be (H, W) or (H, W, C), got shape {value.shape}")
        array = value.astype(np.float32) / 255 if value.dtype == np.uint8 else value.astype(np.float32)
        return _checked_range(torch.from_numpy(array).permute(2, 0, 1)[None], name)
    if isinstance(value, torch.Tensor):
        tensor = value.detach().float().cpu()
        if tensor.ndim == 2:
            tensor = tensor[None]
        if tensor.ndim == 3:
            tensor = tensor[None]
        if tensor.ndim != 4 or tensor.shape[0] != 1:
            raise ValueError(f"{name} as a tensor must be (H, W), (C, H, W) or (1, C, H, W), got {tuple(value.shape)}")
        return _checked_range(tensor, name)
    raise TypeError(f"{name} must be a PIL image, a numpy array or a torch tensor, got {type(value).__name__}")


def _checked_range(tensor: torch.Tensor, name: str) -> torch.Tensor:
    if tensor.numel() and (tensor.min() < 0 or tensor.max() > 1):
        raise ValueError(
            f"{name} values must lie in [0, 1] (or be uint8), got [{tensor.min():.3g}, {tensor.max():.3g}]"
        )
    return tensor
