"""Images and masks in, images out.

Inputs may be PIL images, numpy arrays (H, W, C) of uint8 or floats in [0, 1], or torch tensors (C, H, W) or
(1, C, H, W) in [0, 1]. Inside, images are (1, 3, H, W) float32 in [0, 1] and masks (1, 1, H, W) bool,
True = edit. A mask is thresholded at 0.5 of its range (so grey anti-aliasing decides by majority).
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from blended_pipeline.options import OutputType

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor


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
