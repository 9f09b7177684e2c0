"""BlendedLatentDiffusionPipeline on tiny random components: the background kept exactly, blending in latent
space, progressive mask shrinking, decoder reconstruction, schedulers, saving, Stable Diffusion directories and
bad inputs refused before any work."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
    FlowMatchLCMScheduler,
    HeunDiscreteScheduler,
)
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from helpers import another_tiny_clip, tiny_latent_pipeline, tiny_sdxl_parts, tiny_unet

from blended_pipeline import (
    BlendedLatentDiffusionPipeline,
    RestartFromBestCallback,
    ShrinkingMaskBlendCallback,
    pipeline_latent,
)
from blended_pipeline.reconstruction import fit_decoder
from blended_pipeline.region import latent_region_mask

FAMILIES = ["sd", "sdxl", "sd3", "flux"]


@pytest.fixture(params=FAMILIES)
def latent_pipe(request) -> BlendedLatentDiffusionPipeline:
    """The latent pipeline of each family: what the shared loop promises holds for all of them."""
    return tiny_latent_pipeline(family=request.param)


def edit(pipe, image, mask, **options):
    arguments = dict(
        prompt="a red ball", num_inference_steps=8, num_images_per_prompt=2, generator=torch.Generator().manual_seed(0)
    )
    arguments.update(options)
    return pipe(image=image, mask_image=mask, **arguments)


def last_step_tensors() -> tuple[dict, Any]:
    """Where the tensors a step-end callback is handed are kept, and the callback that keeps them (copied, each
    step over the last: the last step's once the call ends)."""
    seen = {}

    def keep_last(pipeline, step, timestep, tensors):
        seen.update({name: tensor.clone() for name, tensor in tensors.items()})
        return {}

    return seen, keep_last


def outside(mask: PIL.Image.Image) -> np.ndarray:
    return np.asarray(mask) == 0


def test_every_pixel_outside_the_mask_is_the_input(latent_pipe, image, mask):
    out = edit(latent_pipe, image, mask)
    assert len(out.images) == 2 and all(picture.size == image.size for picture in out.images)
    for picture in out.images:
        assert np.array_equal(np.asarray(picture)[outside(mask)], np.asarray(image)[outside(mask)])
        assert not np.array_equal(np.asarray(picture), np.asarray(image))
    assert out.scores[0] >= out.scores[1]


def test_soft_mask_keeps_pixels_where_the_feathered_mask_is_zero(latent_pipe, image, mask):
    out = edit(latent_pipe, image, mask, mask_blur=2.0, output_type="np")
    far = np.ones((24, 40), bool)
    far[2:22, 6:30] = False  # beyond the 2-pixel ramp
    assert np.allclose(out.images[:, far], np.asarray(image)[far] / 255, atol=1e-6)


def test_latents_outside_the_latent_mask_end_as_the_clean_input_latents(latent_pipe, image, mask):
    seen, keep_last = last_step_tensors()
    edit(
        latent_pipe,
        image,
        mask,
        callback_on_step_end=keep_last,
        callback_on_step_end_tensor_inputs=["latents", "image", "mask"],
    )
    keep = seen["mask"] == 0
    assert keep.any() and (seen["mask"] == 1).any()
    assert torch.equal(seen["latents"][keep.expand_as(seen["latents"])], seen["image"][keep.expand_as(seen["image"])])


def test_latent_mask_conservative_marks_any_masked_pixel_nearest_thresholds():
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 5, 5] = 1  # one pixel of the 2x2 cell (2, 2)
    assert latent_region_mask(mask, (8, 8), "conservative").sum() == 1
    assert latent_region_mask(mask, (8, 8), "conservative")[0, 0, 2, 2] == 1
    assert latent_region_mask(mask, (8, 8), "nearest").sum() == 0  # BLD's resize can lose a thin region
    with pytest.raises(ValueError, match="latent_mask"):
        latent_region_mask(mask, (8, 8), "bilinear")


def test_shrinking_schedule_gives_the_expected_mask_sizes_at_each_step():
    callback = ShrinkingMaskBlendCallback()
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 8, 8] = 1
    sizes = [int(callback.mask_at(mask, step, 8).sum()) for step in range(8)]
    assert sizes == [49, 49, 25, 25, 9, 9, 1, 1]  # kernels 7, 5, 3, 1 over equal quarters of the run
    assert [callback.radius_at(step, 10) for step in range(10)] == [3, 3, 3, 2, 2, 1, 1, 1, 0, 0]


def final_latents(pipe, image, mask, **options) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """The output (pictures), and the last step's latents, clean input latents and latent mask as callbacks see them
    after every other callback of the call (``options`` may bring one)."""
    seen = {}

    def keep_last(pipeline, step, timestep, tensors):
        seen.update({name: tensor.clone() for name, tensor in tensors.items()})
        return tensors

    given = options.pop("callback_on_step_end", None)
    chain = MultiPipelineCallbacks([given, keep_last] if given else [keep_last])
    keep_last.tensor_inputs = ["latents", "image", "mask"]
    out = edit(pipe, image, mask, callback_on_step_end=chain, **options)
    return seen["latents"], seen["image"], seen["mask"], out.images


def test_shrinking_callback_runs_in_the_pipeline_and_keeps_the_background(latent_pipe, image, mask):
    latents, clean, region, pictures = final_latents(
        latent_pipe, image, mask, callback_on_step_end=ShrinkingMaskBlendCallback()
    )
    plain, _, _, _ = final_latents(latent_pipe, image, mask)
    keep = (region == 0).expand_as(latents)
    assert torch.equal(latents[keep], clean[keep])  # the last blend (radius 0) puts the clean input back
    assert not torch.equal(latents, plain)  # the wider early masks changed the edit: the callback ran
    assert np.array_equal(np.asarray(pictures[0])[outside(mask)], np.asarray(image)[outside(mask)])


def test_reconstruction_lowers_its_loss_and_leaves_the_pipeline_decoder_unchanged(latent_pipe, image, mask):
    before = {name: value.clone() for name, value in latent_pipe.vae.state_dict().items()}
    source = torch.rand(1, 3, 16, 16) * 2 - 1
    region = torch.zeros(1, 1, 16, 16)
    region[..., 4:12, 4:12] = 1
    fitted = fit_decoder(
        latent_pipe.vae, torch.randn(1, latent_pipe.vae.config.latent_channels, 8, 8), source, region, steps=30, lr=1e-3
    )
    assert fitted.losses[-1] < 0.5 * fitted.losses[0]
    out = edit(latent_pipe, image, mask, reconstruction="decoder")
    assert np.array_equal(np.asarray(out.images[0])[outside(mask)], np.asarray(image)[outside(mask)])
    after = latent_pipe.vae.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


FLOW = dict(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)
SWAPS = {
    "sd": [(DDPMScheduler, {}), (DPMSolverMultistepScheduler, {})],
    "sdxl": [(DDPMScheduler, {}), (DPMSolverMultistepScheduler, {})],
    "sd3": [(FlowMatchLCMScheduler, {}), (DPMSolverMultistepScheduler, FLOW)],  # flow matching, as the model
    "flux": [(FlowMatchLCMScheduler, {}), (DPMSolverMultistepScheduler, FLOW)],
}


@pytest.mark.parametrize("swap", [0, 1])
def test_scheduler_swap_by_from_config(latent_pipe, image, mask, swap):
    ddim, _, _, _ = final_latents(latent_pipe, image, mask)
    scheduler_class, options = SWAPS[latent_pipe.family][swap]
    latent_pipe.scheduler = scheduler_class.from_config(latent_pipe.scheduler.config, **options)
    latents, clean, region, pictures = final_latents(latent_pipe, image, mask)
    assert type(latent_pipe.scheduler) is scheduler_class and not torch.equal(latents, ddim)
    keep = (region == 0).expand_as(latents)
    assert torch.equal(latents[keep], clean[keep])
    assert np.array_equal(np.asarray(pictures[0])[outside(mask)], np.asarray(image)[outside(mask)])


def test_two_call_schedulers_are_refused(latent_pipe, image, mask):
    heun = FlowMatchHeunDiscreteScheduler if latent_pipe.flow_matching else HeunDiscreteScheduler
    latent_pipe.scheduler = heun.from_config(latent_pipe.scheduler.config)
    with pytest.raises(ValueError, match=f"{heun.__name__} takes 2 model calls per step"):
        edit(latent_pipe, image, mask)


def test_save_and_load_reproduce_the_output(latent_pipe, image, mask, tmp_path):
    expected = edit(latent_pipe, image, mask, output_type="np")
    latent_pipe.save_pretrained(tmp_path)
    loaded = BlendedLatentDiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    again = edit(loaded, image, mask, output_type="np")
    assert np.allclose(again.images, expected.images, atol=1e-5) and again.scores == pytest.approx(expected.scores)


def test_a_stable_diffusion_directory_with_a_null_safety_checker_loads(tmp_path, image, mask):
    tiny_latent_pipeline(with_clip=False).save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    index.update(_class_name="StableDiffusionPipeline", safety_checker=[None, None], requires_safety_checker=False)
    for name in ("clip_model", "clip_tokenizer", "feature_extractor"):
        index.pop(name, None)
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    pipe = BlendedLatentDiffusionPipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.clip_model is None
    out = edit(pipe, image, mask)
    assert out.scores is None and len(out.images) == 2  # nothing to rank with: the generation order


def test_results_are_ranked_as_returned_whatever_the_decoder_makes_outside_the_mask(image, mask):
    pipe = tiny_latent_pipeline()
    pipe.set_progress_bar_config(disable=True)
    options = {"num_images_per_prompt": 3, "rank_by": "both", "output_type": "np", "crop_margin": 1.0}  # room around
    plain = edit(pipe, image, mask, **options)
    decode = pipe._decode
    far = 1 - torch.nn.functional.max_pool2d(pipe.ranking.mask, 5, stride=1, padding=2)  # beyond the paste's resampling

    def drifting(*arguments):  # drifts off the input, away from the mask
        return decode(*arguments) * (1 - far) - far

    pipe._decode = drifting
    drifted = edit(pipe, image, mask, **options)
    assert np.array_equal(drifted.images, plain.images)  # the paste hides the drift
    assert drifted.scores == pytest.approx(plain.scores, abs=1e-6)  # and the ranking sees what is returned
    unpasted = edit(pipe, image, mask, **options, reconstruction="none")  # returned with the drift: ranked with it
    pipe._decode = decode
    clean = edit(pipe, image, mask, **options, reconstruction="none")
    assert not np.allclose(sorted(unpasted.scores), sorted(clean.scores), atol=1e-4)


def test_rank_border_weight_marks_each_result_down_by_its_step_across_the_mask_edge(latent_pipe, image, mask):
    by_clip = edit(latent_pipe, image, mask, num_images_per_prompt=3)
    weighted = edit(latent_pipe, image, mask, num_images_per_prompt=3, rank_border_weight=2.0)
    clip_score = {picture.tobytes(): score for picture, score in zip(by_clip.images, by_clip.scores, strict=True)}
    assert set(clip_score) == {picture.tobytes() for picture in weighted.images}  # the same results
    marked_down = [clip_score[p.tobytes()] - s for p, s in zip(weighted.images, weighted.scores, strict=True)]
    assert all(step > 0 for step in marked_down) and len(set(marked_down)) == 3
    assert weighted.scores == sorted(weighted.scores, reverse=True)


@pytest.mark.parametrize(
    "ranked",
    [
        dict(rank_border_weight=0.5),
        dict(candidates_per_result=2),
        dict(rank_rivals="ball,box"),
        dict(rank_denoiser_weight=1.0),
    ],
)
def test_ranking_settings_without_clip_parts_are_refused_before_any_work(image, mask, ranked):
    pipe = tiny_latent_pipeline(with_clip=False)
    calls = counting_unet_calls(pipe)
    with pytest.raises(ValueError, match=f"{next(iter(ranked))}=.* needs CLIP parts"):
        edit(pipe, image, mask, **ranked)
    assert calls == []


def test_each_edit_returns_the_best_of_its_candidates(latent_pipe, image, mask):
    other = PIL.Image.fromarray(np.asarray(image)[::-1].copy())
    prompts, images = ["a red ball", "a blue square"], [image, other]
    every = edit(latent_pipe, images, mask, prompt=prompts, num_images_per_prompt=3)
    best = edit(latent_pipe, images, mask, prompt=prompts, num_images_per_prompt=1, candidates_per_result=3)
    assert [p.tobytes() for p in best.images] == [every.images[0].tobytes(), every.images[3].tobytes()]
    assert best.scores == pytest.approx([every.scores[0], every.scores[3]])
    assert best.settings["candidates_per_result"] == 3


def test_rank_rivals_reach_the_ranking_and_move_every_score(latent_pipe, image, mask):
    plain = edit(latent_pipe, image, mask, num_images_per_prompt=3)
    rivalled = edit(latent_pipe, image, mask, num_images_per_prompt=3, rank_rivals="ball,box,cube;red,blue")
    guidance, rivals = latent_pipe.ranking.guidance, latent_pipe.ranking.rivals
    rounds = [["a red box"] * 3, ["a red cube"] * 3, ["a blue ball"] * 3]
    assert [t.input_ids.tolist() for t in rivals.targets] == [
        guidance.prepare(r, "cpu").input_ids.tolist() for r in rounds
    ]
    assert rivals.present.tolist() == [True] * 3
    plain_score = {p.tobytes(): score for p, score in zip(plain.images, plain.scores, strict=True)}
    assert set(plain_score) == {p.tobytes() for p in rivalled.images}  # the same results
    assert all(plain_score[p.tobytes()] != s for p, s in zip(rivalled.images, rivalled.scores, strict=True))
    assert rivalled.scores == sorted(rivalled.scores, reverse=True)


def test_prompt_lists_edit_each_image_and_negative_prompts_are_taken(latent_pipe, image, mask):
    """Flux runs no classifier-free guidance: it refuses any negative prompt (``test_families``)."""
    other = PIL.Image.fromarray(np.asarray(image)[::-1].copy())
    negatives = dict(negative_prompt=["a blue ball", "a red circle"]) if latent_pipe.classifier_free_guidance else {}
    out = latent_pipe(
        ["a red ball", "a blue square"],
        [image, other],
        mask,
        num_inference_steps=4,
        num_images_per_prompt=2,
        **negatives,
    )
    assert len(out.images) == 4
    assert np.array_equal(np.asarray(out.images[3])[outside(mask)], np.asarray(other)[outside(mask)])
    if latent_pipe.classifier_free_guidance:
        with pytest.raises(ValueError, match="negative prompts"):
            edit(latent_pipe, image, mask, negative_prompt=["a", "b"])


def counting_unet_calls(pipe) -> list:
    calls = []
    pipe.denoiser.register_forward_pre_hook(lambda module, arguments: calls.append(1))
    return calls


@pytest.mark.parametrize(
    "change, error, message",
    [
        (dict(mask=PIL.Image.new("L", (10, 30), 255)), ValueError, "aspect ratio"),
        (dict(mask=PIL.Image.new("L", (40, 24), 0)), ValueError, "mask_image is empty"),
        (dict(strength=0.0), ValueError, r"strength must be in \(0, 1\]"),
        (dict(strength=1.5), ValueError, r"strength must be in \(0, 1\]"),
        (dict(guidance_scale=float("nan")), ValueError, "guidance_scale must be a finite number"),
        (dict(latent_mask="bilinear"), ValueError, "latent_mask must be one of"),
        (dict(reconstruction="inpaint"), ValueError, "reconstruction must be one of"),
        (dict(prompt=""), ValueError, "prompt is empty"),
        (dict(num_inference_steps=5000), ValueError, r"more than the (100|1000) timesteps"),
        (dict(rank_border_weight=-1.0), ValueError, "rank_border_weight must be >= 0"),
        (dict(candidates_per_result=0), ValueError, "candidates_per_result must be an integer >= 1"),
        (dict(rank_rivals="ball"), ValueError, "rank_rivals 'ball': each group needs two or more distinct names"),
        (dict(candidates_per_result=2, output_type="latent"), ValueError, "output_type='latent' returns the samples"),
        (dict(rank_rivals="ball,box", output_type="latent"), ValueError, "rank_rivals='ball,box' ranks results, and"),
        (dict(rank_by="whole", output_type="latent"), ValueError, "pass rank_by='both'"),
    ],
)
def test_bad_inputs_are_refused_before_any_work(latent_pipe, image, mask, change, error, message):
    calls = counting_unet_calls(latent_pipe)
    arguments = dict(prompt="a red ball", image=image, mask_image=mask, num_inference_steps=4)
    arguments.update({"mask_image" if k == "mask" else k: v for k, v in change.items()})
    with pytest.raises(error, match=message):
        latent_pipe(**arguments)
    assert calls == []


def test_a_pixel_unet_is_refused():
    parts = tiny_latent_pipeline().components
    with pytest.raises(TypeError, match="UNet2DConditionModel.*got UNet2DModel"):
        BlendedLatentDiffusionPipeline(**{**parts, "unet": tiny_unet()})


def test_one_generator_per_result_gives_each_edit_what_a_call_of_its_own_gives(latent_pipe, image, mask):
    other = PIL.Image.fromarray(np.asarray(image)[::-1].copy())
    settings = dict(num_inference_steps=4, num_images_per_prompt=2, output_type="np", latent_mask="nearest")
    together = latent_pipe(
        ["a red ball", "a blue square"],
        [image, other],
        mask,
        **settings,
        generator=[torch.Generator().manual_seed(s) for s in range(4)],
    )
    first = latent_pipe(
        "a red ball", image, mask, **settings, generator=[torch.Generator().manual_seed(s) for s in range(2)]
    )
    second = latent_pipe(
        "a blue square", other, mask, **settings, generator=[torch.Generator().manual_seed(s) for s in (2, 3)]
    )
    assert np.allclose(together.images, np.concatenate([first.images, second.images]), atol=1e-4)


def test_bf16_autocast_keeps_the_background(latent_pipe, image, mask):
    dtypes = []
    last = getattr(latent_pipe.denoiser, "conv_out", None) or latent_pipe.denoiser.proj_out
    hook = last.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    out = edit(latent_pipe, image, mask, mixed_precision="bf16", num_inference_steps=4)
    hook.remove()
    assert dtypes and set(dtypes) == {torch.bfloat16}  # the denoiser ran in bf16 at every step
    assert np.array_equal(np.asarray(out.images[0])[outside(mask)], np.asarray(image)[outside(mask)])


class DecodedBest(PipelineCallback):
    """Records the latents at every step and which sample the call's ranking puts first there, decoding
    ``x0_hat`` and pasting it into the input itself."""

    tensor_inputs = ["latents", "pred_original_sample"]

    def __init__(self) -> None:
        super().__init__(cutoff_step_ratio=1.0)
        self.seen: list[torch.Tensor] = []
        self.best: list[int] = []

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        self.seen.append(callback_kwargs["latents"].clone())
        ranking = pipeline.ranking
        decoded = pipeline._decode(callback_kwargs["pred_original_sample"]).clamp(-1, 1)
        pasted = decoded * ranking.mask + ranking.image * (1 - ranking.mask)
        self.best.append(int(ranking(pasted, ranking.mask)[0][0]))
        return callback_kwargs


def test_restart_from_best_copies_the_best_decoded_sample_at_its_step(latent_pipe, image, mask):
    if getattr(latent_pipe.scheduler, "init_noise_sigma", 1) != 1:  # SDXL's Euler gives no x0_hat
        latent_pipe.scheduler = DDIMScheduler.from_config(latent_pipe.scheduler.config)
    noisy = dict(eta=1.0)  # DDIM draws noise where eta > 0, so that the copies part again
    before, after = DecodedBest(), DecodedBest()
    chain = MultiPipelineCallbacks([before, RestartFromBestCallback(at=0.5), after])
    out = edit(latent_pipe, image, mask, num_images_per_prompt=3, callback_on_step_end=chain, **noisy)
    step = round(0.5 * latent_pipe.num_timesteps)
    restarted = after.seen[step]
    assert all(torch.equal(row, restarted[0]) for row in restarted)
    assert torch.equal(restarted[0], before.seen[step][before.best[step]])
    assert not torch.equal(before.seen[step][0], before.seen[step][1])
    assert torch.equal(before.seen[step - 1], after.seen[step - 1])  # no other step is touched
    if latent_pipe.flow_matching:  # flow-matching Euler draws no noise unless configured to
        with pytest.raises(ValueError, match="FlowMatchEulerDiscreteScheduler draws no noise.*stochastic_sampling"):
            edit(latent_pipe, image, mask, restart_at=0.5)
        latent_pipe.scheduler.register_to_config(stochastic_sampling=True)
        out = edit(latent_pipe, image, mask, num_images_per_prompt=3, callback_on_step_end=RestartFromBestCallback(0.5))
    by_argument = edit(latent_pipe, image, mask, num_images_per_prompt=3, restart_at=0.5, **noisy)
    assert [np.asarray(p).tobytes() for p in by_argument.images] == [np.asarray(p).tobytes() for p in out.images]
    assert len({np.asarray(p).tobytes() for p in out.images}) == 3  # the copies parted again
    assert by_argument.settings["restart_at"] == 0.5 and edit(latent_pipe, image, mask).settings["restart_at"] == 0


def test_a_restart_under_a_sampler_that_draws_no_noise_is_refused_and_a_checkpoints_gives_way(image, mask):
    calls = []
    pipe = tiny_latent_pipeline(default_restart_at=0.5)
    pipe.denoiser.register_forward_pre_hook(lambda module, arguments: calls.append(1))
    refused = "DDIMScheduler at eta=0 draws no noise, so the copies would stay near-copies; pass eta > 0"
    with pytest.raises(ValueError, match=refused):
        edit(pipe, image, mask, restart_at=0.5)
    assert calls == []
    assert edit(pipe, image, mask).settings["restart_at"] == 0.0
    assert edit(pipe, image, mask, eta=0.5).settings["restart_at"] == 0.5
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    assert edit(pipe, image, mask).settings["restart_at"] == 0.5


def test_restart_needs_clip_parts_and_a_variance_preserving_scheduler(image, mask):
    with pytest.raises(ValueError, match="restart_at=0.3 ranks results, which needs CLIP parts"):
        edit(tiny_latent_pipeline(with_clip=False), image, mask, restart_at=0.3)
    with pytest.raises(ValueError, match="rank_border_weight=0.2 ranks results, which needs CLIP parts"):
        edit(tiny_latent_pipeline(with_clip=False), image, mask, rank_border_weight=0.2)
    pipe = tiny_latent_pipeline()
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(ValueError, match="sigma-scaled"):
        edit(pipe, image, mask, restart_at=0.3)


def test_a_ranking_clip_ranks_latent_results_in_place_of_the_clip_parts(latent_pipe, image, mask):
    own = edit(latent_pipe, image, mask, num_images_per_prompt=3)
    ranked_by = type(latent_pipe)(**{**latent_pipe.components, "ranking_clip_model": another_tiny_clip()})
    ranked_by.set_progress_bar_config(disable=True)
    ranked = edit(ranked_by, image, mask, num_images_per_prompt=3)
    assert sorted(np.asarray(p).tobytes() for p in own.images) == sorted(np.asarray(p).tobytes() for p in ranked.images)
    assert not np.allclose(sorted(own.scores), sorted(ranked.scores))


def test_latent_output_is_the_final_latents_with_the_input_outside_the_latent_mask(latent_pipe, image, mask):
    seen, keep_last = last_step_tensors()
    out = edit(
        latent_pipe,
        image,
        mask,
        output_type="latent",
        callback_on_step_end=keep_last,
        callback_on_step_end_tensor_inputs=["latents", "image", "mask"],
    )
    assert (
        out.scores is None
        and out.images.shape == (2, latent_pipe.vae.config.latent_channels, 8, 8)
        and torch.equal(out.images, seen["latents"])
    )
    keep = (seen["mask"] == 0).expand_as(out.images)
    assert keep.any() and torch.equal(out.images[keep], seen["image"][keep])


def test_a_step_callback_reads_and_changes_classifier_free_guidance(latent_pipe, image, mask):
    seen = []

    def lower_guidance(pipeline, step_index, timestep, tensors):
        seen.append((pipeline.guidance_scale, pipeline.do_classifier_free_guidance))
        if step_index == 0:
            pipeline._guidance_scale = 1.0
        return tensors

    changed = edit(latent_pipe, image, mask, guidance_scale=5.0, callback_on_step_end=lower_guidance)
    guided = latent_pipe.classifier_free_guidance  # Flux's guidance is its transformer's input, not two passes
    assert seen[:2] == [(5.0, guided), (1.0, False)]
    kept = edit(latent_pipe, image, mask, guidance_scale=5.0)
    assert not np.array_equal(np.asarray(changed.images[0]), np.asarray(kept.images[0]))


def test_weights_in_bf16_and_a_tiled_sliced_vae_keep_the_background(latent_pipe, image, mask):
    vae = latent_pipe.vae
    vae.enable_tiling()
    vae.tile_sample_min_size, vae.tile_latent_min_size = 8, 4  # tiles smaller than the tiny model's 16 px
    vae.enable_slicing()
    tiled = []
    original = vae.tiled_decode
    vae.tiled_decode = lambda *a, **k: tiled.append(1) or original(*a, **k)
    latent_pipe.to(torch.bfloat16)
    out = edit(latent_pipe, image, mask, num_inference_steps=4)
    assert latent_pipe.denoiser.dtype == torch.bfloat16 and tiled
    for picture in out.images:
        assert np.array_equal(np.asarray(picture)[outside(mask)], np.asarray(image)[outside(mask)])
        assert not np.array_equal(np.asarray(picture), np.asarray(image))


def test_fp16_autocast_runs_a_force_upcast_vae_in_float32(latent_pipe, image, mask):
    """SDXL's VAE overflows in fp16; its config's ``force_upcast`` keeps it in float32, as diffusers does."""
    seen = []
    for name in ("encode", "decode"):
        method = getattr(latent_pipe.vae, name)

        def recorded(x, *args, _method=method, **kwargs):
            seen.append((x.dtype, torch.is_autocast_enabled("cpu")))
            return _method(x, *args, **kwargs)

        setattr(latent_pipe.vae, name, recorded)
    assert latent_pipe.vae.config.force_upcast
    out = edit(latent_pipe, image, mask, mixed_precision="fp16", num_inference_steps=2)
    assert seen and set(seen) == {(torch.float32, False)}
    assert np.array_equal(np.asarray(out.images[0])[outside(mask)], np.asarray(image)[outside(mask)])


def test_with_candidates_only_the_results_returned_fit_a_decoder(image, mask, monkeypatch):
    pipe, fits = tiny_latent_pipeline(), []
    monkeypatch.setattr(pipeline_latent, "fit_decoder", lambda *a, **k: fits.append(1) or fit_decoder(*a, **k))
    fitted = edit(pipe, image, mask, candidates_per_result=3, reconstruction="decoder")
    pasted = edit(pipe, image, mask, candidates_per_result=3)
    assert len(fits) == len(fitted.images) == 2
    assert fitted.scores == pasted.scores  # ranked as the plain decoder shows them, pasted
    for returned, as_pasted in zip(fitted.images, pasted.images, strict=True):
        assert (np.asarray(returned) == np.asarray(as_pasted))[outside(mask)].all()


def test_a_checkpoints_candidates_and_rivals_give_way_where_nothing_is_ranked(image, mask):
    defaults = dict(default_candidates_per_result=3, default_rank_rivals="ball,box", default_rank_denoiser_weight=1.0)
    names = ("candidates_per_result", "rank_rivals", "rank_denoiser_weight")
    pipe = tiny_latent_pipeline(**defaults)
    latents = edit(pipe, image, mask, output_type="latent")
    assert latents.images.shape[0] == 2 and latents.settings["candidates_per_result"] == 1
    without_clip = tiny_latent_pipeline(with_clip=False, **defaults)
    out = edit(without_clip, image, mask)
    assert len(out.images) == 2 and out.scores is None
    assert tuple(out.settings[name] for name in names) == (1, "", 0.0)
    ranked = edit(pipe, image, mask)
    assert tuple(ranked.settings[name] for name in names) == (3, "ball,box", 1.0)


def test_a_checkpoints_restart_gives_way_only_where_there_is_nothing_to_rank_with(image, mask):
    """A restart ranks the run's samples, so it still acts when latents are returned (under DDIM with eta > 0, which
    parts its copies); the border weight ranks the results returned, so it gives way there."""
    defaults = dict(default_restart_at=0.5, default_rank_border_weight=0.2)
    latents = edit(tiny_latent_pipeline(**defaults), image, mask, output_type="latent", eta=1.0)
    assert (latents.settings["restart_at"], latents.settings["rank_border_weight"]) == (0.5, 0.0)
    unranked = edit(tiny_latent_pipeline(with_clip=False, **defaults), image, mask)
    assert (unranked.settings["restart_at"], unranked.settings["rank_border_weight"]) == (0.0, 0.0)


def spy_on_votes(pipe) -> list:
    """Each call's ``_denoiser_votes``: the latents, mask and prompts it is given, and the votes it returns."""
    seen, votes_of = [], pipe._denoiser_votes

    def spied(latents, mask, prompts, settings):
        seen.append(dict(latents=latents, mask=mask, prompts=prompts, votes=votes_of(latents, mask, prompts, settings)))
        return seen[-1]["votes"]

    pipe._denoiser_votes = spied
    return seen


def test_the_denoisers_vote_orders_a_pool_of_two_above_a_weight_of_one(latent_pipe, image, mask):
    clip_only = edit(latent_pipe, image, mask, candidates_per_result=2, rank_rivals="ball,box,cube")
    seen = spy_on_votes(latent_pipe)
    voted = edit(
        latent_pipe, image, mask, candidates_per_result=2, rank_rivals="ball,box,cube", rank_denoiser_weight=10.0
    )
    assert len(seen) == 1 and seen[0]["votes"].shape == (2,)  # the pool: the better half of 4 results made
    votes = seen[0]["votes"]
    by_vote = sorted(clip_only.images, key=lambda p: -votes[clip_only.images.index(p)].item())
    assert [p.tobytes() for p in voted.images] == [p.tobytes() for p in by_vote]
    assert sum(voted.scores) == pytest.approx(sum(clip_only.scores), abs=1e-4)  # CLIP's units, the pool's mean
    assert voted.settings["rank_denoiser_weight"] == 10.0


def test_the_vote_sees_the_pools_results_as_returned_encoded_again(image, mask):
    pipe, (final, keep_latents) = tiny_latent_pipeline(), last_step_tensors()
    seen = spy_on_votes(pipe)
    edit(
        pipe,
        image,
        mask,
        num_images_per_prompt=1,
        candidates_per_result=4,
        rank_denoiser_weight=1.0,
        callback_on_step_end=keep_latents,
        callback_on_step_end_tensor_inputs=["latents", "mask"],
    )
    decoded = pipe._decode(final["latents"])
    pool = pipe.ranking.of_results(decoded)[0][:2]
    as_returned = pipe.ranking.as_returned(decoded[pool], pool)
    assert not torch.equal(as_returned, decoded[pool].clamp(-1, 1))  # the input pasted outside the mask
    assert torch.allclose(seen[0]["latents"], pipe._encode(as_returned), atol=1e-5)
    assert torch.equal(seen[0]["mask"], final["mask"][pool]) and seen[0]["prompts"] == ["a red ball"]


@pytest.mark.parametrize(
    "family, prediction_type",
    [(family, None) for family in FAMILIES] + [("sd", "v_prediction"), ("sd", "sample")],
)
def test_the_vote_is_the_best_rivals_denoising_error_at_mid_schedule_less_the_prompts(
    family, prediction_type, image, mask
):
    """Worked by hand from what the vote is given: noised halfway with the seeded noises, the error in the latent
    mask under the prompt and under its rival, against what the model was trained to predict."""
    pipe = tiny_latent_pipeline(family=family)
    if prediction_type is not None:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=prediction_type)
    seen = spy_on_votes(pipe)
    options = dict(num_images_per_prompt=1, candidates_per_result=4, rank_rivals="ball,box", rank_denoiser_weight=1.0)
    edit(pipe, image, mask, prompt="a red box", **options)
    latents, region = seen[0]["latents"], seen[0]["mask"]
    noises = torch.randn((2, 1, *latents.shape[1:]), generator=torch.Generator().manual_seed(0))
    errors = []
    for text in ("a red box", "a red ball"):
        conditioning = pipe._text_conditioning([text], 2, torch.device("cpu"))
        error = torch.zeros(2)
        for noise in noises:
            if pipe.flow_matching:  # trained on 1000 timesteps, the middle one
                sample, t, target = 0.5 * latents + 0.5 * noise, torch.tensor(500.0), noise - latents
            else:  # the tiny schedule's 100 timesteps, the middle one (49.5 rounded to even)
                alpha_bar = pipe.scheduler.alphas_cumprod[50]
                sample = alpha_bar.sqrt() * latents + (1 - alpha_bar).sqrt() * noise
                t, target = (
                    torch.tensor(50),
                    {
                        None: noise.expand_as(latents),
                        "v_prediction": alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * latents,
                        "sample": latents,
                    }[prediction_type],
                )
            predicted = pipe._denoiser_prediction(sample, t, conditioning)
            cells = region.sum(dim=(1, 2, 3)) * latents.shape[1]
            error += ((predicted - target) ** 2 * region).sum(dim=(1, 2, 3)) / cells
        errors.append(error)
    assert seen[0]["votes"].tolist() == pytest.approx((errors[1] - errors[0]).tolist(), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3"])
def test_the_votes_conditioning_is_the_prompt_rows_of_classifier_free_conditioning(family):
    pipe = tiny_latent_pipeline(family=family)
    texts = ["a red box", "a ball"]
    conditional = pipe._text_conditioning(texts, 3, torch.device("cpu"))
    guided = pipe._prompt_conditioning(texts, ["a blue cube", "grass"], 3, torch.device("cpu"))

    def tensors(conditioning):
        for name, value in conditioning.items():
            yield from tensors(value) if isinstance(value, dict) else [(name, value)]

    pairs = list(zip(tensors(conditional), tensors(guided), strict=True))
    assert pairs and all(name == other for (name, _), (other, _) in pairs)
    for (name, prompt_rows), (_, rows) in pairs:
        assert prompt_rows.shape[0] == 6 and prompt_rows.dtype == rows.dtype, name
        assert torch.allclose(prompt_rows, rows[6:], atol=1e-6), name
    assert not torch.allclose(conditional["encoder_hidden_states"], guided["encoder_hidden_states"][:6])


@pytest.mark.parametrize("family, guided", [("sd", 4), ("sdxl", 2), ("sd3", 4), ("flux", 2)])
def test_a_texts_conditioning_encodes_those_texts_alone(family, guided):
    """The vote's conditioning runs the text encoders on its texts only; a sampling step's on the negatives too
    where classifier-free guidance takes them (SDXL zeroes an empty negative, Flux runs no guidance)."""
    pipe, batches = tiny_latent_pipeline(family=family), []
    encoders = [getattr(pipe, name, None) for name in ("text_encoder", "text_encoder_2", "text_encoder_3")]
    encoders = [encoder for encoder in encoders if encoder is not None]
    for encoder in encoders:
        encoder.register_forward_pre_hook(lambda module, arguments: batches.append(arguments[0].shape[0]))
    pipe._text_conditioning(["a red box", "a ball"], 3, torch.device("cpu"))
    assert batches == [2] * len(encoders)  # one call of each encoder, on the two texts
    batches.clear()
    pipe._prompt_conditioning(["a red box", "a ball"], None, 3, torch.device("cpu"))
    assert batches == [guided] * len(encoders)


def test_a_refiners_text_conditioning_encodes_no_negatives():
    """A refiner (the second encoder only, aesthetic scores, no zeros for an empty negative) encodes the empty
    negatives a sampling step takes, and the vote's conditioning only its texts, with the positive score."""
    from blended_pipeline.families import latent_pipeline_class

    parts = tiny_sdxl_parts(refiner=True)
    pipe = latent_pipeline_class("sdxl")(**parts, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
    batches = []
    pipe.text_encoder_2.register_forward_pre_hook(lambda module, arguments: batches.append(arguments[0].shape[0]))
    conditional = pipe._text_conditioning(["a red box", "a ball"], 3, torch.device("cpu"))
    assert batches == [2]
    guided = pipe._prompt_conditioning(["a red box", "a ball"], None, 3, torch.device("cpu"))
    assert batches == [2, 2, 2]  # the prompts, then the empty negatives
    assert torch.equal(conditional["added_cond_kwargs"]["time_ids"], guided["added_cond_kwargs"]["time_ids"][6:])
    assert not torch.equal(guided["added_cond_kwargs"]["time_ids"][:6], guided["added_cond_kwargs"]["time_ids"][6:])
    assert torch.allclose(conditional["encoder_hidden_states"], guided["encoder_hidden_states"][6:], atol=1e-6)


def test_the_conditional_rows_are_the_text_encoders_states_of_each_text():
    pipe = tiny_latent_pipeline()
    conditioning = pipe._text_conditioning(["a red box", "a ball"], 3, torch.device("cpu"))
    tokens = pipe.tokenizer(
        ["a red box", "a ball"], padding="max_length", max_length=pipe.tokenizer.model_max_length, return_tensors="pt"
    )
    states = pipe.text_encoder(tokens.input_ids).last_hidden_state.repeat_interleave(3, 0)
    assert torch.allclose(conditioning["encoder_hidden_states"], states)


@pytest.mark.parametrize("family, step, vote_calls", [("sd", 8, [8, 8, 2, 2]), ("flux", 4, [4, 4, 4, 4, 2, 2])])
def test_the_vote_runs_no_larger_batch_than_a_sampling_step(family, step, vote_calls, image, mask):
    pipe, batches = tiny_latent_pipeline(family=family), []
    pipe.denoiser.register_forward_pre_hook(
        lambda module, arguments, options: batches.append((arguments or [options["hidden_states"]])[0].shape[0]),
        with_kwargs=True,
    )
    rivalled = dict(num_images_per_prompt=1, candidates_per_result=4, rank_rivals="ball,box,cube,cone,cup")
    edit(pipe, image, mask, **rivalled)
    steps = len(batches)
    batches.clear()
    edit(pipe, image, mask, rank_denoiser_weight=1.0, **rivalled)
    # a step runs 4 results (twice with classifier-free guidance); the vote 5 texts x 2 pool rows, two noises each
    assert set(batches[:steps]) == {step} and batches[steps:] == vote_calls


def test_a_pool_of_one_is_not_voted_on(image, mask):
    pipe = tiny_latent_pipeline()
    seen = spy_on_votes(pipe)
    out = edit(pipe, image, mask, num_images_per_prompt=1, candidates_per_result=3, rank_denoiser_weight=1.0)
    plain = edit(pipe, image, mask, num_images_per_prompt=1, candidates_per_result=3)
    assert seen == [] and out.images[0].tobytes() == plain.images[0].tobytes() and out.scores == plain.scores


def test_the_vote_is_refused_before_any_work_for_a_schedule_it_cannot_noise_as_trained(image, mask):
    pipe = tiny_latent_pipeline()
    del pipe.scheduler.alphas_cumprod
    calls = counting_unet_calls(pipe)
    with pytest.raises(ValueError, match="rank_denoiser_weight noises the results as the denoiser was trained"):
        edit(pipe, image, mask, rank_denoiser_weight=1.0)
    assert calls == []


def test_the_vote_is_refused_before_any_work_for_latents_and_unknown_prediction_types(image, mask):
    pipe = tiny_latent_pipeline()
    calls = counting_unet_calls(pipe)
    with pytest.raises(ValueError, match="output_type='latent' returns the samples unranked"):
        edit(pipe, image, mask, rank_denoiser_weight=1.0, output_type="latent")
    pipe.scheduler.register_to_config(prediction_type="flow_x")
    with pytest.raises(ValueError, match=r"prediction_type among .* \(it has 'flow_x'\)"):
        edit(pipe, image, mask, rank_denoiser_weight=1.0)
    assert calls == []


def test_zoom_edits_a_small_mask_enlarged_and_ranks_in_the_crop_it_would_have_had(latent_pipe, image):
    array = np.zeros((24, 40), dtype=np.uint8)
    array[10:14, 18:22] = 255  # 4 pixels across: the unzoomed crop is the model's 16, the zoomed one 8
    small = PIL.Image.fromarray(array)
    seen, keep = last_step_tensors()
    options = dict(
        candidates_per_result=2,
        rank_denoiser_weight=1.0,
        callback_on_step_end=keep,
        callback_on_step_end_tensor_inputs=["mask"],
    )
    votes = spy_on_votes(latent_pipe)
    plain = edit(latent_pipe, image, small, **options)
    plain_mask, plain_ranking = seen["mask"], latent_pipe.ranking
    zoomed = edit(latent_pipe, image, small, zoom=0.5, **options)
    assert zoomed.settings["zoom"] == 0.5 and plain.settings["zoom"] == 0.0
    assert seen["mask"].sum() > 2 * plain_mask.sum()  # twice as many latent cells across
    assert plain_ranking.to_view is None and latent_pipe.ranking.to_view is not None
    assert torch.equal(latent_pipe.ranking.image, plain_ranking.image)  # seen as without zoom
    assert torch.equal(latent_pipe.ranking.mask, plain_ranking.mask)
    assert torch.equal(votes[1]["mask"], votes[0]["mask"])  # the vote too, in the unzoomed latent cells
    for picture in zoomed.images:
        assert picture.size == image.size
        assert np.array_equal(np.asarray(picture)[outside(small)], np.asarray(image)[outside(small)])
    assert [np.asarray(p).tolist() for p in zoomed.images] != [np.asarray(p).tolist() for p in plain.images]
    with pytest.raises(ValueError, match=r"zoom must be in \[0, 1\] \(the share of the crop's side"):
        edit(latent_pipe, image, small, zoom=1.5)
