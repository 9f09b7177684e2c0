"""Each composable piece on its own: augmentations, blending callbacks, guidance, ranking, image I/O."""

from __future__ import annotations

import math

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import another_tiny_clip, fast_call, tiny_clip_parts
from diffusers import DDPMScheduler
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from blended_pipeline import (
    BackgroundPreservationLoss,
    BlendCallback,
    CLIPGuidance,
    ProgressiveDilationBlendCallback,
    ProjectiveAugmentation,
)
from blended_pipeline.augment import warp
from blended_pipeline.guidance import clip_pixel_values, range_loss, spherical_distance
from blended_pipeline.image_io import load_mask
from blended_pipeline.settings import DEFAULTS
from blended_pipeline.ranking import rank
from blended_pipeline.region import fill_from_surround, paste, to_resolution
from blended_pipeline.restart import RestartFromBestCallback, copies_of_best


def images(batch: int = 2, size: int = 16) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


# Augmentations


def test_augmentation_layout_first_view_untouched_and_reproducible():
    x = images()
    augment = ProjectiveAugmentation()
    views = augment(x, 8, torch.Generator().manual_seed(0))
    assert views.shape == (16, 3, 16, 16)
    assert torch.equal(views[:2], x)
    assert torch.equal(views, augment(x, 8, torch.Generator().manual_seed(0)))
    assert not torch.equal(views, augment(x, 8, torch.Generator().manual_seed(1)))
    assert not torch.allclose(views[2:4], x)


def test_augmentation_is_differentiable():
    x = images().requires_grad_(True)
    ProjectiveAugmentation()(x, 4, torch.Generator().manual_seed(0))[2:].pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_augmentation_with_probability_zero_is_identity():
    x = images()
    augment = ProjectiveAugmentation(affine_p=0.0, perspective_p=0.0)
    assert torch.allclose(augment(x, 3, torch.Generator().manual_seed(0)), x.repeat(3, 1, 1, 1), atol=1e-6)


def test_augmentation_uses_one_generator_per_image():
    x = images()
    augment = ProjectiveAugmentation()
    pair = augment(x, 4, [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)])
    alone = augment(x[:1], 4, [torch.Generator().manual_seed(5)])
    assert torch.equal(pair[0::2], alone)
    with pytest.raises(ValueError, match="one per image"):
        augment(x, 4, [torch.Generator()])


def test_warp_translation_moves_content():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 2, 2] = 1
    shift = torch.tensor([[[1.0, 0.0, -0.25], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # 1/8 of the width
    moved = warp(x, shift)
    assert moved[0, 0, 2, 3] == pytest.approx(1.0)


# Blending


class Recorder(PipelineCallback):
    tensor_inputs = ["latents", "noised_image", "mask", "image"]

    def __init__(self):
        super().__init__()
        self.seen = []

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        self.seen.append({k: v.clone() for k, v in callback_kwargs.items()})
        return callback_kwargs


def test_blend_callback_alone():
    latents, noised = torch.full((1, 3, 4, 4), 5.0), torch.full((1, 3, 4, 4), -5.0)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    out = BlendCallback()(
        type("P", (), {"num_timesteps": 1})(), 0, 10, {"latents": latents, "noised_image": noised, "mask": mask}
    )
    assert torch.all(out["latents"][..., :2] == 5) and torch.all(out["latents"][..., 2:] == -5)


def test_default_blending_keeps_outside_at_the_next_noise_level(pipe, image, mask):
    recorder = Recorder()
    fast_call(
        pipe,
        image,
        mask,
        callback_on_step_end=MultiPipelineCallbacks([BlendCallback(), recorder]),
        num_images_per_prompt=4,
    )
    timesteps = pipe.scheduler.timesteps
    assert len(recorder.seen) == 4
    for step, seen in enumerate(recorder.seen):
        outside = seen["mask"] == 0
        outside = outside.expand_as(seen["latents"])
        assert torch.equal(seen["latents"][outside], seen["noised_image"][outside])
        residual = seen["noised_image"] - seen["image"] * 0  # the noised input itself
        if step + 1 < len(timesteps):
            # Noise level of t-1 (the sample after this step), not t: the std of x_bg - sqrt(abar) x is sqrt(1-abar).
            alpha_bar = pipe.scheduler.alphas_cumprod[timesteps[step + 1]]
            noise = residual - alpha_bar.sqrt() * seen["image"]
            assert noise.std().item() == pytest.approx(math.sqrt(1 - alpha_bar), rel=0.1)
        else:
            assert torch.equal(seen["noised_image"], seen["image"].expand_as(seen["noised_image"]))


def test_user_callback_runs_after_default_blending(pipe, image, mask):
    recorder = Recorder()
    fast_call(pipe, image, mask, callback_on_step_end=recorder)
    last = recorder.seen[-1]
    outside = (last["mask"] == 0).expand_as(last["latents"])
    assert torch.equal(last["latents"][outside], last["image"].expand_as(last["latents"])[outside])


def test_blending_can_be_replaced(pipe, image, mask):
    calls = []

    class CountingBlend(BlendCallback):
        def mask_at(self, mask, step_index, num_steps):
            calls.append(step_index)
            return mask

    fast_call(pipe, image, mask, callback_on_step_end=CountingBlend())
    assert calls == [0, 1, 2, 3]


def test_plain_function_callback_without_blending(pipe, image, mask):
    seen = []
    fast_call(
        pipe,
        image,
        mask,
        blend=False,
        callback_on_step_end=lambda p, i, t, kw: seen.append(sorted(kw)) or kw,
        callback_on_step_end_tensor_inputs=["latents", "pred_original_sample"],
    )
    assert seen == [["latents", "pred_original_sample"]] * 4


def test_contradictory_blending_requests_are_refused(pipe, image, mask):
    with pytest.raises(ValueError, match="blend=False"):
        fast_call(pipe, image, mask, blend=False, callback_on_step_end=BlendCallback())
    with pytest.raises(TypeError, match="callable"):
        fast_call(pipe, image, mask, callback_on_step_end="blend")


def test_a_plain_function_callback_runs_after_blending_with_the_tensors_it_names(pipe, image, mask):
    seen = []

    def watch(pipeline, step_index, timestep, tensors):
        seen.append({name: value.clone() for name, value in tensors.items()})
        return tensors

    names = ["latents", "noised_image", "mask"]
    watched = fast_call(pipe, image, mask, callback_on_step_end=watch, callback_on_step_end_tensor_inputs=names)
    assert len(seen) == 4 and all(sorted(step) == sorted(names) for step in seen)
    for step in seen:  # blending ran first: outside the mask the sample is the noised input
        keep = (step["mask"] == 0).expand_as(step["latents"])
        assert torch.equal(step["latents"][keep], step["noised_image"][keep])
    assert np.array_equal(watched.images, fast_call(pipe, image, mask).images)


def test_a_plain_function_callback_can_replace_the_latents(pipe, image, mask):
    def grey_at_the_end(pipeline, step_index, timestep, tensors):
        if step_index + 1 == pipeline.num_timesteps:
            return {"latents": torch.zeros_like(tensors["latents"])}
        return tensors

    out = fast_call(pipe, image, mask, callback_on_step_end=grey_at_the_end)
    inside = np.asarray(mask) > 0
    assert np.allclose(out.images[:, inside], 0.5)


def test_interrupt_stops_after_that_step_and_returns_ranked_results(pipe, image, mask):
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))

    def stop_after_two(pipeline, step_index, timestep, tensors):
        pipeline._interrupt = step_index == 1
        return tensors

    out = fast_call(pipe, image, mask, num_images_per_prompt=3, callback_on_step_end=stop_after_two)
    assert len(calls) == 2 and pipe.interrupt
    assert len(out.images) == 3 and out.scores == sorted(out.scores, reverse=True)
    keep = np.asarray(mask) == 0
    source = np.asarray(image).astype(np.float32) / 255
    assert all(np.array_equal(result[keep], source[keep]) for result in out.images)
    calls.clear()
    fast_call(pipe, image, mask)  # the next call starts uninterrupted
    assert len(calls) == 4 and not pipe.interrupt


def test_progressive_dilation_shrinks_to_the_real_mask():
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 7:9, 7:9] = 1
    callback = ProgressiveDilationBlendCallback(max_dilation=3, shrink_until=0.5)
    areas = [callback.mask_at(mask, step, 10).sum().item() for step in range(10)]
    assert areas[0] == 64  # 2 + 2 * 3 = 8 pixels wide
    assert areas == sorted(areas, reverse=True)
    assert areas[5:] == [4.0] * 5
    with pytest.raises(ValueError, match="max_dilation"):
        ProgressiveDilationBlendCallback(max_dilation=-1)


def test_progressive_dilation_in_the_pipeline_keeps_the_background_exact(pipe, image, mask):
    out = fast_call(pipe, image, mask, callback_on_step_end=ProgressiveDilationBlendCallback(max_dilation=2))
    keep = np.asarray(mask) == 0
    source = np.asarray(image).astype(np.float32) / 255
    assert all(np.array_equal(result[keep], source[keep]) for result in out.images)


# Guidance and ranking


def test_copies_of_best_fill_each_group_from_its_best():
    samples = torch.arange(8.0).view(8, 1, 1, 1)
    order = torch.tensor([2, 0, 3, 1, 5, 4, 7, 6])  # best first within each group of four
    assert copies_of_best(samples, order, 4, keep=1).flatten().tolist() == [2, 2, 2, 2, 5, 5, 5, 5]
    assert copies_of_best(samples, order, 4, keep=2).flatten().tolist() == [0, 0, 2, 2, 4, 5, 4, 5]
    assert torch.equal(copies_of_best(samples, order, 4, keep=4), samples)
    with pytest.raises(ValueError, match=r"at must be in \(0, 1\)"):
        RestartFromBestCallback(at=1.0)
    with pytest.raises(ValueError, match="keep must be an integer >= 1"):
        RestartFromBestCallback(keep=0)


class StepLatents(PipelineCallback):
    """Records the latents it is handed at every step, and what the pipeline's ranking makes of ``x0_hat`` there."""

    tensor_inputs = ["latents", "pred_original_sample", "mask", "image"]

    def __init__(self) -> None:
        super().__init__(cutoff_step_ratio=1.0)
        self.seen: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.best: list[int] = []

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        self.seen.append(callback_kwargs["latents"].clone())
        mask = callback_kwargs["mask"]
        self.masks.append(mask)
        pasted = callback_kwargs["pred_original_sample"].clamp(-1, 1) * mask + callback_kwargs["image"] * (1 - mask)
        self.best.append(int(pipeline.ranking(pasted, mask)[0][0]))
        return callback_kwargs


def test_restart_from_best_copies_the_best_sample_at_its_step_and_the_copies_part_again(pipe, image, mask):
    before, after = StepLatents(), StepLatents()
    chain = MultiPipelineCallbacks([before, RestartFromBestCallback(at=0.5), after])
    out = fast_call(pipe, image, mask, num_images_per_prompt=3, callback_on_step_end=chain)
    restarted = after.seen[2]  # 4 steps run: the step nearest half of them
    assert all(torch.equal(row, restarted[0]) for row in restarted)
    assert torch.equal(restarted[0], before.seen[2][before.best[2]])  # a copy of the best, as the results are ranked
    assert not torch.equal(before.seen[2][0], before.seen[2][1])
    assert torch.equal(before.seen[1], after.seen[1])  # no other step is touched
    assert not np.array_equal(out.images[0], out.images[1])  # each copy draws its own noise afterwards
    by_argument = fast_call(pipe, image, mask, num_images_per_prompt=3, restart_at=0.5)
    np.testing.assert_array_equal(by_argument.images, out.images)  # the argument adds the same callback


def test_restart_at_is_checked_and_defaults_to_the_checkpoints(pipe, image, mask, tmp_path):
    from blended_pipeline import BlendedDiffusionPipeline

    with pytest.raises(ValueError, match=r"restart_at must be in \[0, 1\)"):
        fast_call(pipe, image, mask, restart_at=1.0)
    assert pipe.config.default_restart_at == 0.0  # a checkpoint that names none does not restart
    configured = BlendedDiffusionPipeline(**{**pipe.components, "default_restart_at": 0.5})
    configured.save_pretrained(tmp_path)
    loaded = BlendedDiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.default_restart_at == 0.5
    by_default = fast_call(loaded, image, mask)
    np.testing.assert_array_equal(by_default.images, fast_call(loaded, image, mask, restart_at=0.5).images)
    assert not np.array_equal(by_default.images, fast_call(loaded, image, mask, restart_at=0).images)
    with pytest.raises(ValueError, match="default_restart_at must be in"):
        BlendedDiffusionPipeline(**{**pipe.components, "default_restart_at": -0.1})


def test_clip_pixel_values_match_the_feature_extractor():
    parts = tiny_clip_parts()
    x = images(1, 16)
    pil = PIL.Image.fromarray(((x[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy())
    expected = parts["feature_extractor"](pil, return_tensors="pt").pixel_values
    quantised = torch.from_numpy(np.array(pil)).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert torch.allclose(clip_pixel_values(quantised, parts["feature_extractor"]), expected, atol=1e-5)
    assert clip_pixel_values(images(2, 40), parts["feature_extractor"]).shape == (2, 3, 16, 16)


def test_clip_guidance_loss_score_and_gradient():
    guidance = CLIPGuidance(**tiny_clip_parts())
    target = guidance.prepare(["a red ball"], torch.device("cpu"))
    x = images(3).requires_grad_(True)
    loss = guidance.loss(x, target)
    score = guidance.score(x, target)
    assert loss.shape == score.shape == (3,)
    assert torch.all(loss >= 0)
    # The spherical distance falls as the cosine similarity rises.
    assert torch.argsort(loss).tolist() == torch.argsort(score, descending=True).tolist()
    loss.sum().backward()
    assert x.grad.abs().sum() > 0


def test_spherical_distance_and_range_loss():
    u = torch.tensor([[1.0, 0.0]])
    assert spherical_distance(u, u).item() == 0
    assert spherical_distance(u, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(2 * (math.pi / 4) ** 2)
    assert range_loss(torch.zeros(1, 3, 2, 2)).item() == 0
    assert range_loss(torch.full((1, 3, 2, 2), 2.0)).item() == pytest.approx(1.0)


def test_rank_sorts_best_first():
    class ByMean:
        def score(self, x, target):
            return x.mean(dim=(1, 2, 3))

    x = torch.stack([torch.full((3, 4, 4), v) for v in (0.1, 0.9, 0.5)])
    order, scores = rank(ByMean(), x, torch.ones(1, 1, 4, 4), None)
    assert order.tolist() == [1, 2, 0]
    assert scores.tolist() == pytest.approx([0.9, 0.5, 0.1])


def test_rank_by_masked_region_whole_image_or_both():
    class ByMean:
        def score(self, x, target):
            return x.mean(dim=(1, 2, 3))

    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1  # the top half
    x = torch.zeros(2, 3, 4, 4)
    x[0, :, :2] = 0.5  # brighter in the mask
    x[1, :, :2], x[1, :, 2:] = 0.4, 1.0  # darker in the mask, much brighter outside it
    assert rank(ByMean(), x, mask, None, "masked")[0].tolist() == [0, 1]
    assert rank(ByMean(), x, mask, None, "whole")[0].tolist() == [1, 0]
    order, scores = rank(ByMean(), x, mask, None, "both")
    assert order.tolist() == [1, 0] and scores.tolist() == pytest.approx([0.2 + 0.7, 0.25 + 0.25])
    with pytest.raises(ValueError, match="rank_by must be one of"):
        rank(ByMean(), x, mask, None, "crop")


def test_edge_step_measures_the_colour_step_across_the_mask_edge_and_ranking_can_weigh_it():
    from blended_pipeline.ranking import edge_step

    class ByMean:
        def score(self, x, target):
            return x.mean(dim=(1, 2, 3))

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


def test_custom_guidance_plugs_in_as_a_plain_attribute(pipe, image, mask):
    class Brightness:
        def prepare(self, prompts, device):
            return None

        def loss(self, views, target):
            return -views.mean(dim=(1, 2, 3))

        def score(self, x, target):
            return x.mean(dim=(1, 2, 3))

    pipe.guidance = Brightness()
    out = fast_call(pipe, image, mask, num_images_per_prompt=3)
    assert out.scores == sorted(out.scores, reverse=True)
    inside = np.asarray(mask) > 0
    brighter = fast_call(pipe, image, mask, num_images_per_prompt=3, clip_guidance_scale=5000.0)
    assert brighter.images[:, inside].mean() > out.images[:, inside].mean()


def lpips_with_random_backbone() -> BackgroundPreservationLoss:
    import lpips

    torch.manual_seed(0)
    return BackgroundPreservationLoss(lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval())


def test_background_loss_looks_only_outside_the_mask():
    loss = lpips_with_random_backbone()
    x = images(1)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    changed_inside = x.clone()
    changed_inside[..., 4:12, 4:12] = 0.3
    changed_outside = x.clone()
    changed_outside[..., :4, :] = 0.3
    assert loss(x, changed_inside, mask).item() == pytest.approx(0, abs=1e-6)
    assert loss(x, changed_outside, mask).item() > 0.01


def test_algorithm_1_with_background_loss(pipe, image, mask):
    plain = fast_call(pipe, image, mask, blend=False)
    lpips_loss = fast_call(
        pipe, image, mask, blend=False, background_loss_scale=1000.0, background_loss=lpips_with_random_backbone()
    )
    mse_loss = fast_call(pipe, image, mask, blend=False, background_loss_scale=1000.0, background_loss="mse")
    for with_loss in (lpips_loss, mse_loss):
        assert np.isfinite(with_loss.images).all() and not np.array_equal(plain.images, with_loss.images)
    assert not np.array_equal(lpips_loss.images, mse_loss.images)


def test_missing_lpips_weights_say_where_to_put_them(monkeypatch, pipe, image, mask):
    import lpips

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(lpips, "LPIPS", offline)
    with pytest.raises(RuntimeError, match="alexnet-owt-7be5be79.pth"):
        fast_call(pipe, image, mask, blend=False, background_loss_scale=1.0)
    # The offline choice runs, and a loss of weight 0 is never loaded.
    assert np.isfinite(
        fast_call(pipe, image, mask, blend=False, background_loss_scale=1.0, background_loss="mse").images
    ).all()
    assert np.isfinite(fast_call(pipe, image, mask, blend=False).images).all()


# Image I/O


def test_mask_at_model_resolution_covers_every_masked_pixel():
    mask = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    mask[..., 10, 10] = True  # one pixel
    _, small = to_resolution(torch.zeros(1, 3, 64, 64), mask, (16, 16))
    assert small.sum() == 1 and small[0, 0, 2, 2] == 1


def test_paste_keeps_the_input_outside_the_mask():
    source = torch.rand(1, 3, 10, 14)
    mask = torch.zeros(1, 1, 10, 14, dtype=torch.bool)
    mask[..., 2:5, 3:9] = True
    out = paste(torch.ones(2, 3, 8, 8), source, mask)
    assert out.shape == (2, 3, 10, 14)
    assert torch.equal(out[:, :, ~mask[0, 0]], source[:, :, ~mask[0, 0]].expand(2, -1, -1))
    assert torch.allclose(out[:, :, mask[0, 0]], torch.tensor(1.0))


def test_load_mask_errors():
    with pytest.raises(ValueError, match="empty"):
        load_mask(np.zeros((4, 4), np.uint8), (4, 4))
    with pytest.raises(ValueError, match="aspect ratio"):
        load_mask(np.full((4, 8), 255, np.uint8), (4, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_mask(np.full((4, 4), 3.0, np.float32), (4, 4))


def test_feather_ramps_outward_and_reaches_exact_zero():
    from blended_pipeline.region import feather

    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., 12:20, 12:20] = True
    assert torch.equal(feather(mask, 0), mask.float())
    soft = feather(mask, 3)
    assert torch.all(soft[mask] == 1)
    ramp = soft[0, 0, 15, 20:24]
    assert torch.all(ramp[:-1] > ramp[1:]) and 0 < ramp[0] < 1
    assert torch.all(soft[0, 0, :, :8] == 0) and torch.all(soft[0, 0, :8] == 0)


def test_crop_box_is_square_contains_the_mask_and_stays_inside():
    from blended_pipeline.region import crop_box

    mask = torch.zeros(1, 1, 200, 300)
    mask[..., 10:30, 250:290] = 1  # 20 x 40 near the top-right corner
    top, left, bottom, right = crop_box(mask, 32, margin=0.25)
    assert bottom - top == right - left == 60
    assert 0 <= top <= 10 and bottom >= 30 and left <= 250 and right <= 300
    assert crop_box(mask[..., :32, :32], 32, 0.25) == (0, 0, 32, 32)  # not larger than the model: whole image
    wide = torch.zeros(1, 1, 100, 400)
    wide[..., 40:60, 10:390] = 1
    assert crop_box(wide, 32, 0.25) == (0, 0, 100, 400)  # no square fits: whole image


# Guidance as functions


def test_guided_noise_is_the_prediction_shifted_along_the_loss_gradient():
    """An analytic stand-in: eps = a * x and loss = sum(c * x0_hat), so d loss / d x_t is known in closed form."""
    from blended_pipeline.guidance import guided_noise_prediction

    a, alpha_bar = 0.3, torch.tensor(0.64)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    c = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))

    def loss(x0_hat, x_t, abar):
        return (c * x0_hat).sum()

    sigma = (1 - alpha_bar).sqrt()
    for backprop, gradient in ((True, c * (1 - sigma * a) / alpha_bar.sqrt()), (False, c / alpha_bar.sqrt())):
        guided, x0_hat = guided_noise_prediction(lambda s: a * s, x, alpha_bar, loss, backprop)
        assert torch.allclose(guided, a * x + sigma * gradient, atol=1e-6)
        assert torch.allclose(x0_hat, (x - sigma * a * x) / alpha_bar.sqrt(), atol=1e-6)
    six = guided_noise_prediction(lambda s: torch.cat([a * s, s + 7], dim=1), x, alpha_bar, loss)[0]
    assert six.shape == (2, 6, 4, 4) and torch.equal(six[:, 3:], x + 7)  # a learned variance passes through


def test_guidance_loss_weights_views_range_and_background():
    from blended_pipeline.guidance import GuidanceLoss, mse_outside

    class Mean:
        def loss(self, views, target):
            return views.mean(dim=(1, 2, 3))

    def identity_views(images, count, generator=None):
        return images.repeat(count, 1, 1, 1)

    x0_hat = torch.full((2, 3, 4, 4), 2.0)
    source, mask = torch.zeros(2, 3, 4, 4), torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    loss = GuidanceLoss(Mean(), None, mask, identity_views, 3, clip_guidance_scale=10.0, range_loss_scale=5.0)
    assert loss(x0_hat, x0_hat, torch.tensor(0.5)).item() == pytest.approx(2 * (10 * 1.0 + 5 * 1.0))
    with_bg = GuidanceLoss(
        Mean(),
        None,
        mask,
        identity_views,
        3,
        10.0,
        5.0,
        background_loss=mse_outside,
        background_loss_scale=2.0,
        source=source,
    )
    assert with_bg(x0_hat, x0_hat, torch.tensor(0.5)).item() == pytest.approx(2 * (10 + 5 + 2 * 2.0))
    mixed = GuidanceLoss(Mean(), None, mask, identity_views, 3, 10.0, 0.0, clip_input="mixed")
    x_t = torch.zeros_like(x0_hat)  # judged = x0_hat * sqrt(1 - abar) + x_t * (1 - sqrt(1 - abar)) = 2 * 0.6
    assert mixed(x0_hat, x_t, torch.tensor(0.64)).item() == pytest.approx(2 * 10 * 1.2 * 0.5)
    masks = torch.zeros(2, 1, 4, 4)
    masks[0, :, :2, :], masks[1, :, :1, :2] = 1, 1  # half the image and an eighth
    by_area = GuidanceLoss(Mean(), None, masks, identity_views, 3, 10.0, 0.0, guidance_area_reference=0.25)
    torch.testing.assert_close(by_area.clip_weights(), torch.tensor([10 * 0.25 / 0.5, 10 * 0.25 / 0.125]))
    # each result's CLIP term (its masked mean: 2 * area) weighed by its own weight
    assert by_area(x0_hat, x0_hat, torch.tensor(0.5)).item() == pytest.approx(5 * 2 * 0.5 + 20 * 2 * 0.125)


def test_blending_uses_the_input_noised_to_the_level_of_the_step_just_produced(pipe, image, mask):
    """A scheduler whose 'noise' writes the timestep into the sample shows which level each blend used."""

    class TimestepNoise(DDPMScheduler):
        def add_noise(self, original, noise, timesteps):
            return torch.zeros_like(original) + timesteps.float().view(-1, 1, 1, 1)

    pipe.scheduler = TimestepNoise.from_config(pipe.scheduler.config)
    seen = []

    def record(pipeline, step_index, timestep, tensors):
        seen.append((tensors["noised_image"].clone(), tensors["image"]))
        return tensors

    fast_call(
        pipe,
        image,
        mask,
        num_inference_steps=8,
        strength=0.5,
        callback_on_step_end=record,
        callback_on_step_end_tensor_inputs=["noised_image", "image"],
    )
    timesteps = pipe.scheduler.timesteps[4:]
    assert len(seen) == 4
    for i in range(3):
        assert torch.all(seen[i][0] == timesteps[i + 1])
    assert torch.equal(*seen[3])  # after the last step: the clean input


def test_fill_from_surround_paints_the_mask_with_the_colour_around_it():
    image = torch.zeros(2, 3, 16, 16)
    image[:, 0] = 0.5  # a background of (0.5, 0, 0)
    image[:, :, 5:11, 5:11] = 1.0  # an object under the mask
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 4:12, 4:12] = 1
    mask[1] = 1  # no ring: everything is masked
    filled = fill_from_surround(image, mask)
    torch.testing.assert_close(filled[0, :, 4:12, 4:12], torch.tensor([0.5, 0.0, 0.0]).view(3, 1, 1).expand(3, 8, 8))
    assert torch.equal(filled[0][(mask[0] == 0).expand(3, -1, -1)], image[0][(mask[0] == 0).expand(3, -1, -1)])
    assert torch.equal(filled[1], image[1])
    soft = fill_from_surround(image[:1], mask[:1] * 0.5)  # a soft mask mixes the fill in by its value
    torch.testing.assert_close(soft[0, :, 7, 7], (image[0, :, 7, 7] + torch.tensor([0.5, 0.0, 0.0])) / 2)
