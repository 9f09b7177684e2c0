"""The region an edit happens in: the mask's soft edge, the crop around it, the model's resolution, the paste.

This is the algorithm's geometry, shared by every pipeline: an image of any size is edited on a square crop
around the mask, brought to the model's resolution, and pasted back so that every pixel where the mask is 0 is
the input's, exactly. A small mask may be edited on a tighter crop, enlarged (``zoom``), so that the model gives it
more of its pixels or latent cells; its results are then ranked in the view the edit would have had without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class EditRegion:
    """One edit's crop: its index in the input, the soft mask over it, and both at the model's resolution.

    ``crop_mask`` is (1, 1, H', W') floats in [0, 1] over the crop at the input's resolution; ``image`` is
    (1, 3, h, w) in [-1, 1] and ``mask`` (1, 1, h, w) in [0, 1] at the model's. Only the crop is ever converted
    to floats, so a large input costs its stored bytes and not a float copy of itself. ``view``: where the crop
    was zoomed into, the region the edit would have had without zoom, where its results are ranked (``in_view``),
    so that the ranking sees objects at the size it knows; None where the crop is that region.
    """

    crop: tuple
    crop_mask: torch.Tensor
    image: torch.Tensor
    mask: torch.Tensor
    view: EditRegion | None = None

    @classmethod
    def around(
        cls,
        source: torch.Tensor,
        mask: torch.Tensor,
        resolution: tuple[int, int],
        margin: float,
        blur: float = 0.0,
        zoom: float = 0.0,
    ) -> EditRegion:
        """The region of ``source`` (1, 3, H, W), 8-bit or floats in [0, 1], that the (1, 1, H, W) bool ``mask``
        feathered by ``blur`` pixels (``feather``) asks to edit: on a square crop around it (``square_around``),
        or, with ``zoom`` in (0, 1], on the square inside that crop that the feathered mask's bounding box spans
        ``zoom`` of the side of (``zoomed_square``, keeping ``margin``'s context), where that square is smaller."""
        height, width = mask.shape[-2:]
        reach = math.ceil(blur) if blur > 0 else 0
        top, left, bottom, right = bounding_box(mask)
        window = (max(0, top - reach), max(0, left - reach), min(height, bottom + reach), min(width, right + reach))
        soft = feather(mask[_crop(window)], blur)  # exactly 0 farther than ``reach`` from the mask
        inside = bounding_box(soft > 0)
        support = (window[0] + inside[0], window[1] + inside[1], window[0] + inside[2], window[1] + inside[3])

        def region_on(box: tuple[int, int, int, int], view: EditRegion | None = None) -> EditRegion:
            crop_mask = torch.zeros(1, 1, box[2] - box[0], box[3] - box[1])
            crop_mask[_crop(_shifted(support, box))] = soft[_crop(inside)]
            image = as_unit_float(source[_crop(box)])
            return cls(_crop(box), crop_mask, *to_resolution(image, crop_mask, resolution), view)

        box = square_around(support, (height, width), max(resolution), margin)
        zoomed = zoomed_square(support, box, zoom, margin) if zoom > 0 else box
        return region_on(box) if zoomed == box else region_on(zoomed, view=region_on(box))

    def in_view(self, results: torch.Tensor, view_input: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) results of this region's crop in [-1, 1], put over that crop into its ``view``, whose input
        ``view_input`` (1, 3, H', W') in [0, 1] is, at the model's resolution; the results themselves where there
        is no view."""
        if self.view is None:
            return results
        inner = _crop(_shifted(_box(self.crop), _box(self.view.crop)))
        view_input = view_input.to(results.device)
        seen = view_input.expand(results.shape[0], -1, -1, -1).clone()
        seen[inner] = paste(results, view_input[inner], torch.ones_like(self.crop_mask))
        size = tuple(self.view.image.shape[-2:])
        return (seen if seen.shape[-2:] == size else _resized(seen, size)) * 2 - 1

    def paste(self, results: torch.Tensor, source: torch.Tensor, exact: bool = True) -> torch.Tensor:
        """(N, 3, h, w) results in [-1, 1] put into the input ``source`` (1, 3, H, W): (N, 3, H, W) of the
        source's type (8-bit results rounded), the input's exact pixels wherever the mask is 0 (``exact``; else
        the results fill their whole crop)."""
        mask = self.crop_mask if exact else torch.ones_like(self.crop_mask)
        edited = paste(results, as_unit_float(source[self.crop]), mask)
        if source.dtype == torch.uint8:
            edited = (edited * 255).round()
        count, channels, height, width = results.shape[0], *source.shape[1:]
        whole = torch.empty(count, height, width, channels, dtype=source.dtype, device=results.device)
        whole = whole.permute(0, 3, 1, 2)  # laid out as images are stored: no copy on the way out
        whole.copy_(source.expand(count, -1, -1, -1))
        whole[self.crop] = edited.to(source.dtype)
        return whole


def _crop(box: tuple[int, int, int, int]) -> tuple:
    """The index that cuts the (top, left, bottom, right) box out of a (..., H, W) tensor."""
    top, left, bottom, right = box
    return (..., slice(top, bottom), slice(left, right))


def _box(crop: tuple) -> tuple[int, int, int, int]:
    """The (top, left, bottom, right) box that the index ``crop`` (``_crop``'s) cuts."""
    rows, cols = crop[-2:]
    return rows.start, cols.start, rows.stop, cols.stop


def _shifted(box: tuple[int, int, int, int], origin: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """``box`` in the coordinates of the box ``origin``."""
    return box[0] - origin[0], box[1] - origin[1], box[2] - origin[0], box[3] - origin[1]


def as_unit_float(image: torch.Tensor) -> torch.Tensor:
    """An 8-bit image as floats in [0, 1]; floats as they are."""
    return image.float() / 255 if image.dtype == torch.uint8 else image


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


def bounding_box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """The (top, left, bottom, right) box of a non-empty (..., H, W) mask's set pixels."""
    plane = mask.reshape(-1, *mask.shape[-2:]).any(0)
    rows, cols = torch.nonzero(plane.any(-1)), torch.nonzero(plane.any(-2))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def crop_box(mask: torch.Tensor, resolution: int, margin: float) -> tuple[int, int, int, int]:
    """The square (top, left, bottom, right) to edit an image larger than the model on (``square_around`` the
    bounding box of the mask's set pixels; the whole image when it is no larger than the model)."""
    height, width = mask.shape[-2:]
    if max(height, width) <= resolution:
        return 0, 0, height, width
    return square_around(bounding_box(mask > 0), (height, width), resolution, margin)


def square_around(
    box: tuple[int, int, int, int], size: tuple[int, int], resolution: int, margin: float
) -> tuple[int, int, int, int]:
    """The square (top, left, bottom, right) to edit a region ``box`` of an image of ``size`` (H, W) on.

    The box grown by ``margin`` times its longer side on every side for context, made square by growing within
    the image. The whole image when it is no larger than the model, or too narrow for a square.
    """
    height, width = size
    if max(height, width) <= resolution:
        return 0, 0, height, width
    top, left, bottom, right = box
    side = int(round(max(bottom - top, right - left) * (1 + 2 * margin)))
    side = max(side, resolution)
    if side > min(height, width):
        return 0, 0, height, width
    top = min(max(0, (top + bottom - side) // 2), height - side)
    left = min(max(0, (left + right - side) // 2), width - side)
    return top, left, top + side, left + side


def zoomed_square(
    box: tuple[int, int, int, int], around: tuple[int, int, int, int], zoom: float, margin: float = 0.0
) -> tuple[int, int, int, int]:
    """The square (top, left, bottom, right) whose side the region ``box``'s longer side is ``zoom`` of, but grown
    by at least ``margin`` of that side on every side (the context ``square_around`` keeps), centred on the box and
    moved inside the square ``around`` (the crop it would have been edited on); ``around`` itself where that
    square would be no smaller."""
    top, left, bottom, right = box
    longer = max(bottom - top, right - left)
    side = max(math.ceil(longer / zoom), int(round(longer * (1 + 2 * margin))))
    if side >= min(around[2] - around[0], around[3] - around[1]):
        return around
    top = min(max(around[0], (top + bottom - side) // 2), around[2] - side)
    left = min(max(around[1], (left + right - side) // 2), around[3] - side)
    return top, left, top + side, left + side


def to_resolution(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The image in [-1, 1] and the mask as floats in [0, 1] at the model's resolution.

    A model-resolution pixel takes the largest mask value under it, so no masked input pixel is left out.
    """
    mask = mask.float()
    if image.shape[-2:] != size:
        image = _resized(image, size)
        mask = F.adaptive_max_pool2d(mask, size) if mask.shape[-2] >= size[0] else F.interpolate(mask, size=size)
    return image * 2 - 1, mask


def _resized(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] at ``size``: bicubic, antialiased where it shrinks."""
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def ranking_views(
    regions: list[EditRegion], sources: list[torch.Tensor], rows_per_edit: int, image: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None]:
    """The rows' input and mask where their results are ranked, and what puts results there (``Ranking.to_view``):
    for an edit whose crop was zoomed into, its view (``EditRegion.in_view``), so that the ranking sees objects at
    the size it knows; else ``image`` and ``mask``, the rows' own at the model's resolution, and None where no
    edit's crop was zoomed into. Of the inputs, only the views' crops are kept."""
    zoomed = {edit: region for edit, region in enumerate(regions) if region.view is not None}
    if not zoomed:
        return image, mask, None
    view_inputs = {edit: as_unit_float(sources[edit][region.view.crop]) for edit, region in zoomed.items()}
    edit_of_row = torch.arange(image.shape[0]) // rows_per_edit
    image, mask = image.clone(), mask.clone()
    for edit, region in zoomed.items():
        rows = (edit_of_row == edit).to(image.device)
        image[rows], mask[rows] = region.view.image.to(image.device), region.view.mask.to(mask.device)

    def to_view(pixels: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        edits = edit_of_row if rows is None else rows.cpu() // rows_per_edit
        seen = pixels.clone()
        for edit, region in zoomed.items():
            picked = (edits == edit).to(pixels.device)
            if picked.any():
                seen[picked] = region.in_view(pixels[picked], view_inputs[edit])
        return seen

    return image, mask, to_view


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
        shrinks = edited.shape[-2] > image.shape[-2]  # as results of a zoomed crop are
        edited = F.interpolate(edited, size=image.shape[-2:], mode="bicubic", align_corners=False, antialias=shrinks)
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
