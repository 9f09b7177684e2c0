"""The denoiser's vote as pure functions: its texts, its pool, its margins and how it re-ranks a ranking."""

from __future__ import annotations

import pytest
import torch

from blended_pipeline.denoiser_vote import reranked, vote_margins, vote_pool, vote_texts
from blended_pipeline.rivals import rival_groups


def test_a_results_texts_are_its_prompt_then_its_rivals_or_no_text():
    groups = rival_groups("circle,square,triangle")
    assert vote_texts("a green Triangle", groups) == ["a green Triangle", "a green circle", "a green square"]
    assert vote_texts("a red ball", groups) == ["a red ball", ""]
    assert vote_texts("a red ball", ()) == ["a red ball", ""]


@pytest.mark.parametrize("made, returned, pool", [(16, 4, 8), (4, 4, 4), (5, 1, 2), (1, 1, 1), (6, 2, 3)])
def test_the_pool_is_the_better_half_and_at_least_those_returned(made, returned, pool):
    assert vote_pool(made, returned) == pool


def test_the_margin_is_the_best_rivals_error_less_the_prompts():
    errors = torch.tensor([[0.2, 0.5, 0.3], [0.4, 0.1, 0.9], [0.3, 0.3, 0.3]])
    assert vote_margins(errors).tolist() == pytest.approx([0.1, -0.3, 0.0])


def test_the_pool_is_reranked_by_its_scores_plus_the_weighted_standardised_vote_in_score_units():
    order, scores = torch.tensor([2, 0, 1, 3]), torch.tensor([1.0, 0.8, 0.5, 0.1])
    votes = torch.tensor([0.0, 4.0])  # standardised: -1, +1; the pool's scores spread by 0.1
    kept_order, kept = reranked(order, scores, votes, 0.5, group_size=4, pool=2)
    assert kept_order.tolist() == [2, 0, 1, 3]
    assert kept.tolist() == pytest.approx([0.95, 0.85, 0.5, 0.1])
    swapped_order, swapped = reranked(order, scores, votes, 2.0, group_size=4, pool=2)
    assert swapped_order.tolist() == [0, 2, 1, 3]
    assert swapped.tolist() == pytest.approx([1.0, 0.8, 0.5, 0.1])


def test_each_group_is_reranked_on_its_own_and_equal_votes_change_nothing():
    order, scores = torch.tensor([1, 0, 3, 2]), torch.tensor([0.9, 0.7, 0.6, 0.2])
    new_order, new_scores = reranked(order, scores, torch.tensor([0.0, 1.0, 5.0, 5.0]), 10.0, group_size=2, pool=2)
    assert new_order.tolist() == [0, 1, 3, 2]  # the first group swapped, the second's votes are equal
    assert new_scores[2:].tolist() == pytest.approx([0.6, 0.2])
    assert new_scores[:2].sum().item() == pytest.approx(1.6)  # the pool's mean score is kept


def test_a_pool_of_two_at_weight_one_is_a_tie_that_clips_order_keeps():
    order, scores = torch.tensor([1, 0]), torch.tensor([0.7, 0.3])
    new_order, new_scores = reranked(order, scores, torch.tensor([0.0, 1.0]), 1.0, group_size=2, pool=2)
    assert new_order.tolist() == [1, 0] and new_scores.tolist() == pytest.approx([0.5, 0.5])


def test_equal_clip_scores_are_settled_by_the_vote():
    order, scores = torch.tensor([0, 1, 2]), torch.tensor([0.4, 0.4, 0.4])
    new_order, new_scores = reranked(order, scores, torch.tensor([0.1, 0.3, 0.2]), 0.5, group_size=3, pool=3)
    assert new_order.tolist() == [1, 2, 0] and new_scores.tolist() == pytest.approx([0.4] * 3)
