"""Ranking (``ranking``): best first by the masked region, the whole image or both, the edge step and its weight
(also as a checkpoint's default), and a second CLIP that ranks in place of the guiding one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import StepLatents, another_tiny_clip, fast_call

from blended_pipeline import CLIPGuidance
from blended_pipeline.ranking import RIVAL_WEIGHT, Ranking, Rivals, rank
from blended_pipeline.settings import DEFAULTS


class ByMean:
    """A guidance whose score is the mean brightness: rankings whose order is known."""

    def score(self, x, target):
        return x.mean(dim=(1, 2, 3))


def brighter_inside_or_outside() -> tuple[torch.Tensor, torch.Tensor]:
    """Two results and a mask (the top half): the first brighter in the mask, the second much brighter outside."""
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    x = torch.zeros(2, 3, 4, 4)
    x[0, :, :2] = 0.5
    x[1, :, :2], x[1, :, 2:] = 0.4, 1.0
    return x, mask


def test_rank_sorts_best_first():
    x = torch.stack([torch.full((3, 4, 4), v) for v in (0.1, 0.9, 0.5)])
    order, scores = rank(ByMean(), x, torch.ones(1, 1, 4, 4), None)
    assert order.tolist() == [1, 2, 0]
    assert scores.tolist() == pytest.approx([0.9, 0.5, 0.1])


def test_rank_by_masked_region_whole_image_or_both():
    x, mask = brighter_inside_or_outside()
    assert rank(ByMean(), x, mask, None, "masked")[0].tolist() == [0, 1]
    assert rank(ByMean(), x, mask, None, "whole")[0].tolist() == [1, 0]
    order, scores = rank(ByMean(), x, mask, None, "both")
    assert order.tolist() == [1, 0] and scores.tolist() == pytest.approx([0.2 + 0.7, 0.25 + 0.25])
    with pytest.raises(ValueError, match="rank_by must be one of"):
        rank(ByMean(), x, mask, None, "crop")


def test_results_rank_with_the_input_outside_the_mask_only_where_it_is_pasted_there():
    x, mask = brighter_inside_or_outside()
    mask, source = mask.expand(2, -1, -1, -1), torch.zeros_like(x)
    pasted = Ranking(ByMean(), None, "whole", 2, 0.0, source, mask)
    as_made = Ranking(ByMean(), None, "whole", 2, 0.0, source, mask, pasted=False)
    assert pasted.of_results(x)[0].tolist() == [0, 1]  # outside the mask both are the input
    assert as_made.of_results(x)[0].tolist() == [1, 0]  # outside the mask the second is brighter
    assert as_made.of_samples(x)[0].tolist() == [1, 0]  # a restart ranks samples as the results will be


def test_results_as_returned_hold_each_rows_input_outside_its_mask_and_are_clamped():
    x, mask = brighter_inside_or_outside()
    mask = torch.cat([mask, 1 - mask])
    source = torch.stack([torch.full((3, 4, 4), -0.5), torch.full((3, 4, 4), 0.25)])
    ranking = Ranking(ByMean(), None, "whole", 2, 0.0, source, mask)
    returned = ranking.as_returned(x[1:] * 3, torch.tensor([1]))  # the second row: its mask is the bottom half
    assert returned.shape == (1, 3, 4, 4)
    assert torch.equal(returned[0, :, :2], torch.full((3, 2, 4), 0.25))  # the input outside the mask
    assert torch.equal(returned[0, :, 2:], torch.full((3, 2, 4), 1.0))  # 3.0, clamped
    as_made = Ranking(ByMean(), None, "whole", 2, 0.0, source, mask, pasted=False)
    assert torch.equal(as_made.as_returned(x * 3), (x * 3).clamp(-1, 1))


def test_edge_step_measures_the_colour_step_across_the_mask_edge_and_ranking_can_weigh_it():
    from blended_pipeline.ranking import edge_step

    mask = torch.zeros(1, 1, 6, 6)
    mask[..., 2:4, 2:4] = 1  # a 2x2 region: 8 pixel pairs cross its edge
    x = torch.zeros(2, 3, 6, 6)
    x[0, :, 2:4, 2:4] = 0.2  # a faint region: a step of 0.2 in each channel
    x[1, :, 2:4, 2:5] = 1.0  # a bright one that runs out of the mask on the right
    steps = edge_step(x, mask)
    torch.testing.assert_close(steps, torch.tensor([0.6, (6 * 3.0 + 2 * 0.0) / 8]))
    assert edge_step(x, torch.ones(1, 1, 6, 6)).tolist() == [0.0, 0.0]  # no edge
    assert rank(ByMean(), x, mask, None, "whole")[0].tolist() == [1, 0]
    order, scores = rank(ByMean(), x, mask, None, "whole", border_weight=1.0)
    assert order.tolist() == [0, 1]
    torch.testing.assert_close(scores, x.mean(dim=(1, 2, 3))[order] - steps[order])


def test_rank_border_weight_is_checked_and_reaches_the_ranking(pipe, image, mask):
    with pytest.raises(ValueError, match="rank_border_weight must be >= 0"):
        fast_call(pipe, image, mask, rank_border_weight=-1.0)
    plain = fast_call(pipe, image, mask, num_inference_steps=2)
    weighed = fast_call(pipe, image, mask, num_inference_steps=2, rank_border_weight=1000.0)
    assert sorted(map(tuple, plain.images.reshape(2, -1))) == sorted(map(tuple, weighed.images.reshape(2, -1)))
    assert plain.scores != weighed.scores


def test_checkpoint_names_its_rank_border_weight(pipe, image, mask, tmp_path):
    from blended_pipeline import BlendedDiffusionPipeline

    assert pipe.config.default_rank_border_weight == 0.0  # a checkpoint that names none ranks by CLIP alone
    configured = BlendedDiffusionPipeline(**{**pipe.components, "default_rank_border_weight": 1000.0})
    configured.save_pretrained(tmp_path)
    loaded = BlendedDiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.default_rank_border_weight == 1000.0
    by_default = fast_call(loaded, image, mask, num_inference_steps=2)
    named = fast_call(loaded, image, mask, num_inference_steps=2, rank_border_weight=1000.0)
    by_clip = fast_call(loaded, image, mask, num_inference_steps=2, rank_border_weight=0.0)
    assert by_default.scores == named.scores != by_clip.scores
    with pytest.raises(ValueError, match="default_rank_border_weight must be >= 0"):
        BlendedDiffusionPipeline(**{**pipe.components, "default_rank_border_weight": -1.0})


def test_a_ranking_clip_ranks_in_place_of_the_guiding_one_and_is_saved(pipe, image, mask, tmp_path):
    from blended_pipeline import BlendedDiffusionPipeline

    ranking_clip = another_tiny_clip()
    two_clips = BlendedDiffusionPipeline(**{**pipe.components, "ranking_clip_model": ranking_clip})
    two_clips.set_progress_bar_config(disable=True)
    final = StepLatents()
    out = fast_call(two_clips, image, mask, num_inference_steps=2, callback_on_step_end=final)
    by_guiding_clip = fast_call(pipe, image, mask, num_inference_steps=2)
    # The same results (the guidance is the guiding CLIP's either way), scored by the ranking CLIP.
    assert sorted(map(tuple, out.images.reshape(2, -1))) == sorted(map(tuple, by_guiding_clip.images.reshape(2, -1)))
    ranker = CLIPGuidance(ranking_clip, pipe.tokenizer, pipe.feature_extractor)
    results, model_mask = final.seen[-1].clamp(-1, 1), final.masks[-1]
    _, expected = rank(ranker, results, model_mask, ranker.prepare(["a red ball"] * 2, "cpu"), DEFAULTS.rank_by)
    np.testing.assert_allclose(out.scores, expected.numpy(), rtol=1e-5)
    assert not np.allclose(out.scores, by_guiding_clip.scores)

    two_clips.save_pretrained(tmp_path)
    loaded = BlendedDiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.ranking_clip_model, type(ranking_clip))
    again = fast_call(loaded, image, mask, num_inference_steps=2)
    np.testing.assert_allclose(again.scores, out.scores, atol=1e-5)
    pipe.save_pretrained(tmp_path / "one")
    assert BlendedDiffusionPipeline.from_pretrained(tmp_path / "one").ranking_clip_model is None


def test_a_ranking_clip_of_another_image_size_is_refused(pipe):
    from blended_pipeline import BlendedDiffusionPipeline

    larger = another_tiny_clip(image_size=32)
    with pytest.raises(ValueError, match="ranking_clip_model's image_size is 32, clip_model's 16"):
        BlendedDiffusionPipeline(**{**pipe.components, "ranking_clip_model": larger})


class ByPromptChannel:
    """A guidance whose score toward a prompt is the mean of the channel the prompt names (red, green, blue)."""

    channels = ("red", "green", "blue")

    def prepare(self, prompts, device):
        return torch.tensor([self.channels.index(p.split()[-1]) for p in prompts])

    def score(self, x, target):
        return x[torch.arange(x.shape[0]), target].mean(dim=(1, 2))


def test_rivals_mark_a_result_down_by_half_its_best_score_for_a_rival_prompt():
    guidance, mask = ByPromptChannel(), torch.ones(1, 1, 2, 2)
    x = torch.zeros(3, 3, 2, 2)
    x[0, 0] = 0.6  # red only
    x[1, 0], x[1, 2] = 0.8, 0.8  # as red, and as blue
    x[2, 0], x[2, 1] = 0.7, 0.1
    target, rounds = guidance.prepare(["a red"] * 3, "cpu"), [["a green"] * 3, ["a blue"] * 3]
    rivals = Rivals(tuple(guidance.prepare(r, "cpu") for r in rounds), torch.tensor([True] * 3))
    assert rank(guidance, x, mask, target, "whole")[0].tolist() == [1, 2, 0]
    order, scores = rank(guidance, x, mask, target, "whole", rivals=rivals)
    assert order.tolist() == [2, 0, 1]
    assert scores.tolist() == pytest.approx([0.7 - RIVAL_WEIGHT * 0.1, 0.6, 0.8 - RIVAL_WEIGHT * 0.8])
    unrivalled = Rivals(rivals.targets, torch.tensor([False] * 3))
    assert rank(guidance, x, mask, target, "whole", rivals=unrivalled)[0].tolist() == [1, 2, 0]
