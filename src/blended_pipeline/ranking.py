"""Ranking results: score each with the guidance, without augmentations; best first within each edit.

The paper scores the masked region alone, which can prefer a result holding only part of the object; scoring
the whole result as well judges the region in its context. Outside the mask every result is the input, so the
whole-image score differs between results only through what the mask holds. A result may also be marked down
for the step of colour at the mask's edge (``border_weight``): a region that runs into its edge (an object cut
off by it, or one continued from outside) differs there from its surround. And a result may be marked down by
what it could be taken for instead (``rivals``): CLIP's best score for a rival prompt (``blended_pipeline.rivals``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

import torch

from blended_pipeline.guidance import Guidance
from blended_pipeline.settings import RankBy

RANK_BY: tuple[str, ...] = get_args(RankBy)
RIVAL_WEIGHT = 0.5
"""The share of a result's best score for a rival prompt taken off its score (chosen on the latent tuning set:
docs/research-log.md)."""


@dataclass(frozen=True)
class Rivals:
    """Rival prompts of each row: ``targets``, one per round, prepared as the prompts are (``rivals.rival_rounds``),
    and ``present``, (N,) whether a row has any (a row without is not marked down)."""

    targets: tuple[Any, ...]
    present: torch.Tensor


@torch.no_grad()
def rank(
    guidance: Guidance,
    images: torch.Tensor,
    mask: torch.Tensor,
    target: Any,
    rank_by: RankBy = "masked",
    group_size: int | None = None,
    border_weight: float = 0.0,
    rivals: Rivals | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The order that sorts ``images`` best first within each group, and the scores in that order.

    ``images`` are (N, 3, H, W), ``target`` what ``guidance.prepare`` made for their N prompts. ``rank_by``:
    "masked" (the paper: the masked region on a grey surround), "whole" (the whole image), or "both" (the sum).
    Consecutive groups of ``group_size`` rows (one edit's results; default: all rows) are ranked on their own.
    ``border_weight`` subtracts that times ``edge_step`` from each score; ``rivals`` subtract ``RIVAL_WEIGHT`` times
    each row's best score (so viewed) for its rival prompts.
    """
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
    scores = view_score(guidance, images, mask, target, rank_by)
    if rivals is not None and rivals.targets:
        best = torch.stack([view_score(guidance, images, mask, t, rank_by) for t in rivals.targets]).amax(dim=0)
        scores = scores - RIVAL_WEIGHT * best * rivals.present.to(scores.device)
    if border_weight > 0:
        scores = scores - border_weight * edge_step(images, mask)
    groups = scores.view(-1, group_size or images.shape[0])
    within = torch.argsort(groups, dim=1, descending=True, stable=True)
    order = (within + torch.arange(groups.shape[0], device=scores.device)[:, None] * groups.shape[1]).flatten()
    return order, scores[order]


def view_score(
    guidance: Guidance, images: torch.Tensor, mask: torch.Tensor, target: Any, rank_by: RankBy
) -> torch.Tensor:
    """(N,) the guidance's score of each image toward ``target``, viewed as ``rank_by`` says."""
    scores = torch.zeros(images.shape[0], device=images.device)
    if rank_by in ("masked", "both"):
        scores = scores + guidance.score(images * mask, target).float()
    if rank_by in ("whole", "both"):
        scores = scores + guidance.score(images, target).float()
    return scores


@dataclass(frozen=True)
class Ranking:
    """One call's ranking, as ``rank`` with everything but the images and their mask fixed: the pipeline ranks its
    results with it, and callbacks rank the run's samples the same way mid-run (``pipeline.ranking``).

    ``image`` and ``mask`` are the rows' input and mask in pixels, in the view they are ranked in; ``to_pixels``
    decodes a sample of the pipeline's space (a latent pipeline's latents) into pixels, None where samples are
    pixels. ``pasted``: the results are returned with the input outside the mask (False: as made, e.g.
    ``reconstruction="none"``). ``rivals``: each row's rival prompts, prepared (None: none named). ``to_view``
    puts results (of the rows given, or all) made on a zoomed crop into that view (``EditRegion.in_view``); None
    where every row's crop is its view.
    """

    guidance: Guidance
    target: Any
    rank_by: RankBy
    group_size: int
    border_weight: float
    image: torch.Tensor
    mask: torch.Tensor
    to_pixels: Callable[[torch.Tensor], torch.Tensor] | None = None
    pasted: bool = True
    rivals: Rivals | None = None
    to_view: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None

    def __call__(self, images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``rank``'s order (best first within each group) and scores."""
        return rank(
            self.guidance, images, mask, self.target, self.rank_by, self.group_size, self.border_weight, self.rivals
        )

    def of_results(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank results as they are returned (``as_returned``)."""
        return self(self.as_returned(pixels), self.mask)

    def as_returned(self, pixels: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Results (of ``rows``, default all) as they are returned, in the view they are ranked in: with the input
        outside the mask when it is pasted there (a decoder's pixels there are then never shown)."""
        image, mask = (self.image, self.mask) if rows is None else (self.image[rows], self.mask[rows])
        pixels = pixels.clamp(-1, 1) if self.to_view is None else self.to_view(pixels.clamp(-1, 1), rows)
        return pixels * mask + image * (1 - mask) if self.pasted else pixels

    def of_samples(self, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank predicted clean samples as the results will be (``of_results``, in pixels)."""
        return self.of_results(samples if self.to_pixels is None else self.to_pixels(samples))


def edge_step(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) the mean absolute colour difference (summed over channels) between neighbouring pixels on either side
    of the mask's edge, horizontal and vertical pairs; 0 where the mask has no edge."""
    inside = (mask > 0).float().expand(images.shape[0], 1, *images.shape[-2:])
    total = torch.zeros(images.shape[0], device=images.device)
    pairs = torch.zeros(images.shape[0], device=images.device)
    for first, second, first_in, second_in in (
        (images[..., :, :-1], images[..., :, 1:], inside[..., :, :-1], inside[..., :, 1:]),
        (images[..., :-1, :], images[..., 1:, :], inside[..., :-1, :], inside[..., 1:, :]),
    ):
        across = (first_in != second_in).float()
        total = total + ((first - second).abs().sum(dim=1, keepdim=True).float() * across).sum(dim=(1, 2, 3))
        pairs = pairs + across.sum(dim=(1, 2, 3))
    return total / pairs.clamp(min=1)
