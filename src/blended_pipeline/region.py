"""The region an edit happens in: the mask's soft edge, the crop around it, the model's resolution, the paste.

This is the algorithm's geometry, shared by every pipeline: an image of any size is edited on a square crop
around the mask, brought to the model's resolution, and pasted back so that every pixel where the mask is 0 is
the input's, exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class EditRegion:
    """One edit's crop: the index of its box in the input, and the crop at the model's resolution.

    ``image`` is (1, 3, h, w) in [-1, 1], ``mask`` (1, 1, h, w) floats in [0, 1], both at the model's resolution.
    """

    crop: tuple
    image: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def around(cls, source: torch.Tensor, mask: torch.Tensor, resolution: tuple[int, int], margin: float) -> EditRegion:
        """The region of ``source`` (1, 3, H, W) in [0, 1] that the (soft) ``mask`` asks to edit."""
        crop = _crop(crop_box(mask, max(resolution), margin))
        return cls(crop, *to_resolution(source[crop], mask[crop], resolution))

    def paste(self, results: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) results in [-1, 1] put into the input: (N, 3, H, W) in [0, 1], the input where mask is 0."""
        edited = source.to(results.device).repeat(results.shape[0], 1, 1, 1)
        edited[self.crop] = paste(results, source[self.crop], mask[self.crop])
        return edited


def _crop(box: tuple[int, int, int, int]) -> tuple:
    """The index that cuts the (top, left, bottom, right) box out of a (..., H, W) tensor."""
    top, left, bottom, right = box
    return (..., slice(top, bottom), slice(left, right))


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


def fill_from_surround(image: torch.Tensor, mask: torch.Tensor, ring: float = 1 / 16) -> torch.Tensor:
    """``image`` (N, C, H, W) with each masked region replaced by the mean colour of a ring just outside it.

    A start for replacing what the mask covers: noised at a strength below 1, the input still shows the covered
    object's colour, which the model then tends to keep. The ring is ``ring`` of the longer side wide (at least
    one pixel); a soft mask mixes the fill in by its value; a row with no ring (the mask covers everything, or
    nothing) keeps its input.
    """
    radius = max(1, round(ring * max(image.shape[-2:])))
    hard = (mask > 0).float()
    around = F.max_pool2d(hard, kernel_size=2 * radius + 1, stride=1, padding=radius) - hard  # (N, 1, H, W)
    count = around.sum(dim=(2, 3), keepdim=True)
    colour = (image * around).sum(dim=(2, 3), keepdim=True) / count.clamp(min=1)
    filled = image + mask * (colour - image)
    return torch.where(count > 0, filled, image)


def paste(edited: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Edited images (N, 3, h, w) in [-1, 1], resized to the input's size, mixed into it by the (soft) mask.

    Returns (N, 3, H, W) in [0, 1]; where the mask is 0, the pixels are exactly the input's.
    """
    edited = (edited.float() + 1) / 2
    if edited.shape[-2:] != image.shape[-2:]:
        edited = F.interpolate(edited, size=image.shape[-2:], mode="bicubic", align_corners=False)
    image, mask = image.to(edited.device), mask.to(edited.device).float()
    return torch.where(mask > 0, image + mask * (edited.clamp(0, 1) - image), image)


def latent_region_mask(mask: torch.Tensor, size: tuple[int, int], mode: str = "conservative") -> torch.Tensor:
    """A (N, 1, H, W) mask in [0, 1] at latent resolution ``size``.

    "conservative": a latent cell takes the largest mask value over its pixels, so any masked pixel marks its
    cell and no part of the region is blended back to the input. "nearest": Blended Latent Diffusion's nearest
    resize, thresholded at 0.5 (a thin region can vanish).
    """
    mask = mask.float()
    if mode == "conservative":
        return F.adaptive_max_pool2d(mask, size)
    if mode == "nearest":
        return (F.interpolate(mask, size=size, mode="nearest") > 0.5).float()
    raise ValueError(f"latent_mask must be 'conservative' or 'nearest', got {mode!r}")
