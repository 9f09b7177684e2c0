"""Per-edit measurements of the results: fidelity outside the mask, the seam, diversity; and averaging."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from blended_pipeline.ranking import edge_step
from blended_pipeline.shapes.judge import Verdict

PSNR_CAP = 100.0  # dB, reported for a background that is bit-exact


def psnr_outside(sample: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) of a (H, W, 3) sample against the input where the mask is 0; ``PSNR_CAP`` when identical."""
    error = np.mean((sample[~mask].astype(np.float64) - image[~mask]) ** 2)
    return PSNR_CAP if error == 0 else min(PSNR_CAP, 10 * math.log10(255**2 / error))


def border_step(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean colour step (mean absolute RGB difference, 0-255) between 4-neighbours on opposite sides of the mask:
    the ranking's ``edge_step`` (summed over channels, in [-1, 1] units) on the 0-255 scale of one channel."""
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    step = edge_step(pixels, torch.from_numpy(np.array(mask))[None, None])
    return float(step[0]) * 127.5 / 3


def diversity(results: list[np.ndarray], mask: np.ndarray) -> float:
    """Mean absolute difference (0-255) inside the mask between every pair of samples."""
    pairs = list(itertools.combinations(results, 2))
    if not pairs:
        return 0.0
    return float(np.mean([np.abs(a[mask].astype(np.float32) - b[mask]).mean() for a, b in pairs]))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    array = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return array.permute(0, 2, 3, 1).cpu().numpy()


def averages(per_edit: list[dict]) -> dict[str, float]:
    """Each per-edit figure's mean over the edits."""
    return {key: float(np.mean([edit[key] for edit in per_edit])) for key in per_edit[0]}


FAILURE_KINDS = ("no_colour", "too_small", "wrong_shape")


def failure_kind(verdict: Verdict) -> str:
    """Why the judge refused a result, in one word: no colour, too small, or the wrong shape."""
    if verdict.reason.startswith("no "):
        return "no_colour"
    return "too_small" if "too small" in verdict.reason else "wrong_shape"
