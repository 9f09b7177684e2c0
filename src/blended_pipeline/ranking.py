"""Ranking results: score each with the guidance, without augmentations; best first within each edit.

The paper scores the masked region alone, which can prefer a result holding only part of the object; scoring
the whole result as well judges the region in its context. Outside the mask every result is the input, so the
whole-image score differs between results only through what the mask holds.
"""

from __future__ import annotations

from typing import Any

import torch

from blended_pipeline.guidance import Guidance
from blended_pipeline.options import RANK_BY, RankBy


@torch.no_grad()
def rank(
    guidance: Guidance,
    images: torch.Tensor,
    mask: torch.Tensor,
    target: Any,
    rank_by: RankBy = "masked",
    group_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The order that sorts ``images`` best first within each group, and the scores in that order.

    ``images`` are (N, 3, H, W), ``target`` what ``guidance.prepare`` made for their N prompts. ``rank_by``:
    "masked" (the paper: the masked region on a grey surround), "whole" (the whole image), or "both" (the sum).
    Consecutive groups of ``group_size`` rows (one edit's results; default: all rows) are ranked on their own.
    """
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
    scores = torch.zeros(images.shape[0], device=images.device)
    if rank_by in ("masked", "both"):
        scores = scores + guidance.score(images * mask, target).float()
    if rank_by in ("whole", "both"):
        scores = scores + guidance.score(images, target).float()
    groups = scores.view(-1, group_size or images.shape[0])
    within = torch.argsort(groups, dim=1, descending=True, stable=True)
    order = (within + torch.arange(groups.shape[0], device=scores.device)[:, None] * groups.shape[1]).flatten()
    return order, scores[order]
