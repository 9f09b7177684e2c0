"""Ranking results: score each with the objective, without augmentations; best first.

The paper scores the masked region alone, which can prefer a result holding only part of the object; scoring
the whole result as well judges the region in its context. Outside the mask every result is the input, so the
whole-image score differs between results only through what the mask holds.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from blended_pipeline.guidance import GuidanceObjective

RankBy = Literal["masked", "whole", "both"]
RANK_BY: tuple[str, ...] = ("masked", "whole", "both")


@torch.no_grad()
def rank(
    objective: GuidanceObjective, images: torch.Tensor, mask: torch.Tensor, target: Any, rank_by: RankBy = "masked"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The order that sorts ``images`` best first, and the sorted scores.

    ``rank_by``: "masked" (the paper: the masked region on a grey surround), "whole" (the whole image), or
    "both" (the sum of the two scores).
    """
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
    scores = torch.zeros(images.shape[0], device=images.device)
    if rank_by in ("masked", "both"):
        scores = scores + objective.score(images * mask, target).float()
    if rank_by in ("whole", "both"):
        scores = scores + objective.score(images, target).float()
    order = torch.argsort(scores, descending=True, stable=True)
    return order, scores[order]
