"""Ranking results: score each with the objective on the masked region, without augmentations; best first."""

from __future__ import annotations

from typing import Any

import torch

from blended_pipeline.guidance import GuidanceObjective


@torch.no_grad()
def rank(
    objective: GuidanceObjective, images: torch.Tensor, mask: torch.Tensor, target: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """The order that sorts ``images`` best first, and the sorted scores.

    Only the masked region is scored (the paper's ranking); the rest of the image is the input's anyway.
    """
    scores = objective.score(images * mask, target).float()
    order = torch.argsort(scores, descending=True, stable=True)
    return order, scores[order]
