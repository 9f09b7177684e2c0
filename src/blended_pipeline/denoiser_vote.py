"""The denoiser's vote: which results the diffusion model itself reads as the prompt rather than as a rival.

A text-conditioned diffusion model predicts the noise of a noised image best under the text that describes it, so
it is a classifier of its own (Li et al., "Your Diffusion Model is Secretly a Zero-Shot Classifier", ICCV 2023).
Its error inside the mask under the prompt's best rival, less its error under the prompt, reads the region as the
model drew it, where a small CLIP reads the colour far better than the outline. The vote re-ranks the best part
of CLIP's ranking (``vote_pool``): CLIP sorts out what misses the prompt, the model chooses among the rest.
"""

from __future__ import annotations

import torch

from blended_pipeline.rivals import RivalGroups, rival_prompts

VOTE_LEVELS: tuple[float, ...] = (0.5,)
"""Where on the noise schedule the results are noised (0 clean, 1 pure noise): chosen on the latent tuning set
(docs/research-log.md)."""
VOTE_NOISES = 2
"""Noises drawn per level, the same for every result and text, so that the errors differ by those alone."""
VOTE_SEED = 0
"""The seed of those noises, drawn on the CPU: a call's ranking depends neither on its generator nor its device."""
PREDICTION_TARGETS = ("epsilon", "v_prediction", "sample")
"""The ``prediction_type``s of a noise-prediction scheduler whose training target the vote can form."""


def vote_texts(prompt: str, groups: RivalGroups) -> list[str]:
    """The texts a result of ``prompt`` is denoised under: the prompt first, then its rivals (``rival_prompts``),
    or the empty prompt where it has none (the vote is then the prompt's gain over no text)."""
    return [prompt, *(rival_prompts(prompt, groups) or [""])]


def vote_pool(made: int, returned: int) -> int:
    """How many of an edit's results, best first by CLIP, the vote re-ranks: the better half, and at least those
    returned."""
    return max(returned, made // 2)


def vote_margins(errors: torch.Tensor) -> torch.Tensor:
    """(N,) votes from (N, T) denoising errors under each row's texts, the prompt's first: the best rival's error
    less the prompt's (higher: the model reads the prompt there, rather than a rival)."""
    return errors[:, 1:].amin(dim=1) - errors[:, 0]


def reranked(
    order: torch.Tensor, scores: torch.Tensor, votes: torch.Tensor, weight: float, group_size: int, pool: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A ranking (``ranking.rank``'s order and scores) with each group's first ``pool`` re-ranked by their
    standardised score plus ``weight`` times their standardised vote, and scored so again in the units of CLIP's
    scores (their mean and spread over the pool), so that scores stay comparable across edits. A tie (to 1e-5 in
    standard units: a pool of two at weight 1, where CLIP and the vote disagree) keeps CLIP's order; equal scores
    are settled by the vote. ``votes`` are those of the first ``pool`` of each group, in order."""
    order, scores = order.view(-1, group_size).clone(), scores.view(-1, group_size).clone()
    best = scores[:, :pool]
    mean, spread = best.mean(dim=1, keepdim=True), best.std(dim=1, unbiased=False, keepdim=True)
    combined = _standardised(best) + weight * _standardised(votes.view(-1, pool).to(scores))
    within = torch.argsort(combined.mul(1e5).round(), dim=1, descending=True, stable=True)
    order[:, :pool] = order[:, :pool].gather(1, within)
    scores[:, :pool] = (mean + spread * combined).gather(1, within)
    return order.flatten(), scores.flatten()


def _standardised(values: torch.Tensor) -> torch.Tensor:
    """Each row less its mean, over its spread (rows without spread: zeros)."""
    spread = values.std(dim=1, unbiased=False, keepdim=True)
    return (values - values.mean(dim=1, keepdim=True)) / spread.where(spread > 0, torch.ones_like(spread))
