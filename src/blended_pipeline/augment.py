"""Extending augmentations: random projective views of an image, so that CLIP's gradient is not adversarial.

A CLIP score computed on one image is easy to raise with invisible pixel changes; the same score averaged over
random perspective and affine views of the image is not (Blended Diffusion, Sec. 4). Views are warped with a
differentiable ``grid_sample``, so gradients flow back to the image, and every random draw comes from the
caller's generator, so results are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

Generators = torch.Generator | Sequence[torch.Generator] | None


class Augmentation(Protocol):
    """Maps (B, C, H, W) images to (num_views * B, C, H, W) views; view ``k`` of image ``b`` is row ``k * B + b``."""

    def __call__(self, images: torch.Tensor, num_views: int, generator: Generators = None) -> torch.Tensor: ...


class ProjectiveAugmentation:
    """The authors' recipe: the first view untouched, the others a random affine then a random perspective warp.

    Args:
        degrees: largest rotation of the affine part.
        translate: largest shift of the affine part, as a fraction of the image side.
        affine_p: probability that a view gets the affine part.
        distortion: how far (as a fraction of half the side) each corner may move in the perspective part.
        perspective_p: probability that a view gets the perspective part.
    """

    def __init__(
        self,
        degrees: float = 15.0,
        translate: float = 0.1,
        affine_p: float = 0.7,
        distortion: float = 0.7,
        perspective_p: float = 0.7,
    ) -> None:
        self.degrees = degrees
        self.translate = translate
        self.affine_p = affine_p
        self.distortion = distortion
        self.perspective_p = perspective_p

    def __call__(self, images: torch.Tensor, num_views: int, generator: Generators = None) -> torch.Tensor:
        if num_views < 1:
            raise ValueError(f"num_views must be at least 1, got {num_views}")
        batch = images.shape[0]
        if num_views == 1:
            return images
        draws = [self._homographies(num_views - 1, g) for g in _per_image_generators(generator, batch)]
        # (num_views - 1, batch, 3, 3): view-major, to match the row order of the output.
        homographies = torch.stack(draws, dim=1).to(device=images.device, dtype=torch.float32)
        repeated = images.unsqueeze(0).expand(num_views - 1, *images.shape).reshape(-1, *images.shape[1:])
        warped = warp(repeated, homographies.reshape(-1, 3, 3))
        return torch.cat([images, warped], dim=0)

    def _homographies(self, count: int, generator: torch.Generator | None) -> torch.Tensor:
        """``count`` matrices mapping output coordinates to input coordinates, both in [-1, 1]."""
        uniform = torch.rand(count, 9, generator=generator, dtype=torch.float64)
        angle = (uniform[:, 0] * 2 - 1) * math.radians(self.degrees)
        shift = (uniform[:, 1:3] * 2 - 1) * self.translate * 2  # a fraction of the side is twice that in [-1, 1]
        affine = _affine_matrix(angle, shift)
        affine[uniform[:, 3] >= self.affine_p] = torch.eye(3, dtype=torch.float64)
        corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
        inward = -corners.sign() * self.distortion * torch.rand(count, 4, 2, generator=generator, dtype=torch.float64)
        perspective = _homography_from_points(corners + inward, corners.expand(count, 4, 2))
        perspective[uniform[:, 4] >= self.perspective_p] = torch.eye(3, dtype=torch.float64)
        # The view applies the affine first, then the perspective: input <- affine^-1 <- perspective^-1 <- output.
        return torch.linalg.inv(affine) @ perspective


def warp(images: torch.Tensor, homographies: torch.Tensor) -> torch.Tensor:
    """Sample ``images`` at ``H @ p`` for every output pixel ``p`` (normalised coordinates), border padding."""
    n, _, height, width = images.shape
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=images.device)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=images.device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1).reshape(1, -1, 3)
    mapped = points @ homographies.to(images.device).transpose(1, 2)
    grid = (mapped[..., :2] / mapped[..., 2:]).reshape(n, height, width, 2)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def _affine_matrix(angle: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    matrix = torch.zeros(angle.shape[0], 3, 3, dtype=torch.float64)
    matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 0, 2] = cos, -sin, shift[:, 0]
    matrix[:, 1, 0], matrix[:, 1, 1], matrix[:, 1, 2] = sin, cos, shift[:, 1]
    matrix[:, 2, 2] = 1
    return matrix


def _homography_from_points(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The (N, 3, 3) homographies that send each of 4 ``source`` points to its ``target`` point."""
    x, y = source[..., 0], source[..., 1]
    u, v = target[..., 0], target[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], dim=-1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], dim=-1)
    system = torch.cat([rows_u, rows_v], dim=1)
    solution = torch.linalg.solve(system, torch.cat([u, v], dim=1))
    return torch.cat([solution, torch.ones_like(solution[:, :1])], dim=1).reshape(-1, 3, 3)


def _per_image_generators(generator: Generators, batch: int) -> list[torch.Generator | None]:
    """One generator per image: a list is used as given, a single generator (or None) serves every image."""
    if isinstance(generator, Sequence):
        if len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} images; pass one per image")
        return list(generator)
    return [generator] * batch


def crop_to_mask(images: torch.Tensor, mask: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Each image's square around its mask's bounding box (grown by ``margin`` of the box's longer side on each
    side), resampled to the image's size: the masked region as large in the view as the whole image was.

    Differentiable in ``images`` (bilinear ``grid_sample``); parts of a square that leave the image are zeros, as
    the outside of the mask is in a masked view. A row with an empty mask keeps the whole image.
    """
    n, _, height, width = images.shape
    rows, cols = mask.flatten(0, 1).amax(dim=2) > 0, mask.flatten(0, 1).amax(dim=1) > 0  # (N, H), (N, W)
    index_y, index_x = torch.arange(height, device=images.device), torch.arange(width, device=images.device)
    top = torch.where(rows, index_y, height).amin(dim=1).float()
    bottom = torch.where(rows, index_y, -1).amax(dim=1).float() + 1
    left = torch.where(cols, index_x, width).amin(dim=1).float()
    right = torch.where(cols, index_x, -1).amax(dim=1).float() + 1
    empty = ~rows.any(dim=1)
    top, left = torch.where(empty, 0.0, top), torch.where(empty, 0.0, left)
    bottom, right = torch.where(empty, float(height), bottom), torch.where(empty, float(width), right)
    half = torch.maximum(bottom - top, right - left) * (0.5 + margin)  # half the square's side, in pixels
    half = torch.where(empty, max(height, width) / 2, half)
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    theta = torch.zeros(n, 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 0, 2] = half * 2 / width, centre_x * 2 / width - 1
    theta[:, 1, 1], theta[:, 1, 2] = half * 2 / height, centre_y * 2 / height - 1
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
