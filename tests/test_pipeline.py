"""The pipeline's contract, on tiny random components."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
)
from diffusers.callbacks import PipelineCallback
from helpers import fast_call, tiny_clip_parts, tiny_pipeline, tiny_unet

from blended_pipeline import BlendedDiffusionPipeline


def keep_region(mask: PIL.Image.Image) -> np.ndarray:
    return np.asarray(mask) == 0


def assert_background_exact(images: np.ndarray, image: PIL.Image.Image, mask: PIL.Image.Image) -> None:
    source = np.asarray(image.convert("RGB")).astype(np.float32) / 255
    keep = keep_region(mask)
    for result in images:
        assert np.array_equal(result[keep], source[keep])


def count_unet_calls(pipe: BlendedDiffusionPipeline) -> list[int]:
    calls = [0]
    pipe.unet.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("output_type", ["np", "pt", "pil"])
def test_output_types_sizes_and_ranking(pipe, image, mask, output_type):
    out = fast_call(pipe, image, mask, num_images_per_prompt=3, output_type=output_type)
    assert len(out.scores) == 3
    assert out.scores == sorted(out.scores, reverse=True)
    if output_type == "np":
        assert out.images.shape == (3, 24, 40, 3) and out.images.dtype == np.float32
        assert 0 <= out.images.min() and out.images.max() <= 1
    elif output_type == "pt":
        assert out.images.shape == (3, 3, 24, 40)
    else:
        assert [im.size for im in out.images] == [(40, 24)] * 3
        keep = keep_region(mask)
        for result in out.images:
            assert np.array_equal(np.asarray(result)[keep], np.asarray(image)[keep])


def test_background_is_bit_exact_and_edit_changes_the_mask(pipe, image, mask):
    out = fast_call(pipe, image, mask)
    assert_background_exact(out.images, image, mask)
    source = np.asarray(image).astype(np.float32) / 255
    inside = ~keep_region(mask)
    assert np.abs(out.images[:, inside] - source[inside]).mean() > 0.05


def test_same_seed_same_output_other_seed_other_output(pipe, image, mask):
    first = fast_call(pipe, image, mask)
    second = fast_call(pipe, image, mask)
    other = fast_call(pipe, image, mask, generator=torch.Generator().manual_seed(1))
    assert np.array_equal(first.images, second.images) and first.scores == second.scores
    assert not np.array_equal(first.images, other.images)


def test_generator_list_one_per_image(pipe, image, mask):
    generators = [torch.Generator().manual_seed(s) for s in (3, 4)]
    out = fast_call(pipe, image, mask, generator=generators)
    again = fast_call(pipe, image, mask, generator=[torch.Generator().manual_seed(s) for s in (3, 4)])
    assert np.array_equal(out.images, again.images)


def test_strength_runs_that_fraction_of_the_schedule(pipe, image, mask):
    calls = count_unet_calls(pipe)
    fast_call(pipe, image, mask, num_inference_steps=8, strength=0.5)
    # Guidance steps plus none for ranking (the UNet is not used to rank).
    assert calls[0] == 4


def test_a_call_without_strength_uses_the_checkpoints_default_strength(image, mask, tmp_path):
    pipe = BlendedDiffusionPipeline(**{**tiny_pipeline().components, "default_strength": 0.5})
    pipe.save_pretrained(tmp_path)
    loaded = BlendedDiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.default_strength == 0.5
    calls = count_unet_calls(loaded)
    fast_call(loaded, image, mask, num_inference_steps=8, strength=None)
    assert calls[0] == 4
    assert tiny_pipeline().config.default_strength == 0.75  # a checkpoint that names none: the paper's


@pytest.mark.parametrize("name", ["default_strength", "scribble_strength"])
def test_checkpoint_strengths_outside_the_range_are_refused(name):
    with pytest.raises(ValueError, match=name):
        BlendedDiffusionPipeline(**{**tiny_pipeline().components, name: 0.0})


def test_save_and_load_round_trip(pipe, image, mask, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = BlendedDiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler) is DDPMScheduler
    before, after = fast_call(pipe, image, mask), fast_call(loaded, image, mask)
    # Loaded CLIP may pick another attention kernel than the one built in memory: equal to float rounding.
    assert np.allclose(before.images, after.images, atol=1e-4)
    assert np.allclose(before.scores, after.scores, atol=1e-5)


def test_plain_ddpm_directory_plus_clip_parts_loads(image, mask, tmp_path):
    DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(tmp_path)
    loaded = BlendedDiffusionPipeline.from_pretrained(tmp_path, **tiny_clip_parts())
    loaded.set_progress_bar_config(disable=True)
    out = fast_call(loaded, image, mask)
    assert_background_exact(out.images, image, mask)


@pytest.mark.parametrize("scheduler_class", [DDIMScheduler, DPMSolverMultistepScheduler])
def test_scheduler_swap_by_from_config(pipe, image, mask, scheduler_class):
    ddpm = fast_call(pipe, image, mask).images
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    out = fast_call(pipe, image, mask)
    assert np.isfinite(out.images).all() and not np.array_equal(out.images, ddpm)
    assert_background_exact(out.images, image, mask)


def test_ddim_steps_along_the_noise_of_the_clipped_prediction(pipe, image, mask, monkeypatch):
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    seen = []
    step = pipe.scheduler.step

    @functools.wraps(step)  # keeps step's signature, which the pipeline reads
    def recording_step(*arguments, **kwargs):
        seen.append(kwargs)
        return step(*arguments, **kwargs)

    monkeypatch.setattr(pipe.scheduler, "step", recording_step)
    fast_call(pipe, image, mask, eta=0.5)
    assert seen and all(k["use_clipped_model_output"] is True and k["eta"] == 0.5 for k in seen)
    with pytest.raises(ValueError, match="eta must be in"):
        fast_call(pipe, image, mask, eta=2.0)


def test_sigma_scaled_scheduler_is_refused(pipe, image, mask):
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(ValueError, match="init_noise_sigma"):
        fast_call(pipe, image, mask)


@pytest.mark.parametrize("variance_type", ["learned_range", "fixed_small"])
def test_learned_variance_unet_with_six_channels(image, mask, variance_type):
    pipe = tiny_pipeline(out_channels=6, variance_type=variance_type)
    out = fast_call(pipe, image, mask)
    assert np.isfinite(out.images).all()
    assert_background_exact(out.images, image, mask)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    assert np.isfinite(fast_call(pipe, image, mask).images).all()


def test_guidance_raises_the_clip_score(image, mask):
    pipe = tiny_pipeline()
    unguided = fast_call(pipe, image, mask, clip_guidance_scale=0.0, num_images_per_prompt=4)
    guided = fast_call(pipe, image, mask, clip_guidance_scale=2000.0, num_images_per_prompt=4)
    assert np.mean(guided.scores) > np.mean(unguided.scores)


@pytest.mark.parametrize("option", [{"backprop_through_unet": False}, {"clip_input": "mixed"}, {"blend": False}])
def test_named_options_change_the_result(pipe, image, mask, option):
    default = fast_call(pipe, image, mask).images
    changed = fast_call(pipe, image, mask, **option)
    assert np.isfinite(changed.images).all() and not np.array_equal(default, changed.images)
    assert_background_exact(changed.images, image, mask)


def test_cheap_gradient_skips_the_unet_backward(pipe, image, mask):
    grads = []
    pipe.unet.conv_out.register_full_backward_hook(lambda *_: grads.append(1))
    fast_call(pipe, image, mask, backprop_through_unet=False)
    assert grads == []
    fast_call(pipe, image, mask)
    assert len(grads) == 4


def test_bf16_autocast_on_cpu(pipe, image, mask):
    out = fast_call(pipe, image, mask, mixed_precision="bf16")
    assert np.isfinite(out.images).all() and all(np.isfinite(out.scores))
    assert_background_exact(out.images, image, mask)
    assert not np.array_equal(out.images, fast_call(pipe, image, mask).images)


def test_bf16_weights_via_to(pipe, image, mask):
    pipe.to("cpu", torch.bfloat16)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.clip_model.dtype == torch.bfloat16
    out = fast_call(pipe, image, mask)
    assert np.isfinite(out.images).all()
    assert_background_exact(out.images, image, mask)


def test_accelerator_sets_device_and_precision(pipe, image, mask):
    from accelerate import Accelerator

    pipe.prepare_with(Accelerator(cpu=True, mixed_precision="bf16"))
    assert pipe.default_mixed_precision == "bf16"
    by_default = fast_call(pipe, image, mask)
    assert np.array_equal(by_default.images, fast_call(pipe, image, mask, mixed_precision="bf16").images)
    assert by_default.settings["mixed_precision"] == "bf16"
    assert not np.array_equal(by_default.images, fast_call(pipe, image, mask, mixed_precision="no").images)
    elsewhere = SimpleNamespace(device=torch.device("meta"), mixed_precision="fp16")  # a device that is not this one
    moved = tiny_pipeline().prepare_with(elsewhere)
    assert {p.device.type for p in [*moved.unet.parameters(), *moved.clip_model.parameters()]} == {"meta"}


def test_rgba_and_grayscale_images_are_converted(pipe, image, mask):
    rgba = image.convert("RGBA")
    assert_background_exact(fast_call(pipe, rgba, mask).images, image, mask)
    gray = image.convert("L")
    out = fast_call(pipe, gray, mask)
    assert_background_exact(out.images, gray.convert("RGB"), mask)


def test_soft_mask_is_thresholded_and_smaller_mask_resized(pipe, image, mask):
    soft = PIL.Image.fromarray((np.asarray(mask) * 0.6).astype(np.uint8))  # 153 > 127.5: edit
    faint = PIL.Image.fromarray(np.where(np.asarray(mask) > 0, 255, 100).astype(np.uint8))  # 100 < 127.5: keep
    assert_background_exact(fast_call(pipe, image, soft).images, image, mask)
    assert_background_exact(fast_call(pipe, image, faint).images, image, mask)
    half = mask.resize((20, 12), PIL.Image.NEAREST)
    assert_background_exact(fast_call(pipe, image, half).images, image, mask)


def test_numpy_and_tensor_inputs(pipe, image, mask):
    array = np.asarray(image)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255
    by_array = fast_call(pipe, array, np.asarray(mask)).images
    by_tensor = fast_call(pipe, tensor, torch.from_numpy(np.asarray(mask) / 255.0)).images
    assert np.array_equal(by_array, fast_call(pipe, image, mask).images)
    assert np.allclose(by_array, by_tensor, atol=1e-6)


BAD_INPUTS = [
    ({"mask_image": PIL.Image.new("L", (40, 24), 0)}, ValueError, "empty"),
    ({"mask_image": PIL.Image.new("L", (24, 24), 255)}, ValueError, "aspect ratio"),
    ({"strength": 0.0}, ValueError, "strength"),
    ({"strength": 1.5}, ValueError, "strength"),
    ({"num_inference_steps": 0}, ValueError, "num_inference_steps"),
    ({"num_inference_steps": 101}, ValueError, "trained with"),
    ({"prompt": ""}, ValueError, "prompt is empty"),
    ({"prompt": None}, TypeError, "prompt must be a string"),
    ({"prompt": ["a", 3]}, TypeError, "prompt must be a string"),
    ({"prompt": ["a", "b"], "image": []}, ValueError, "one length"),
    (
        {
            "prompt": ["a", "b"],
            "output_type": "np",
            "image": [PIL.Image.new("RGB", (40, 24)), PIL.Image.new("RGB", (30, 18))],
        },
        ValueError,
        "one size",
    ),
    ({"clip_guidance_scale": float("nan")}, ValueError, "finite"),
    ({"background_loss": "l1"}, ValueError, "background_loss"),
    ({"generator": [torch.Generator()]}, ValueError, "generators"),
    ({"output_type": "jpeg"}, ValueError, "output_type"),
    ({"num_images_per_prompt": 0}, ValueError, "num_images_per_prompt"),
    ({"num_augmentations": 0}, ValueError, "num_augmentations"),
    ({"clip_input": "x_t"}, ValueError, "clip_input"),
    ({"mask_blur": -1.0}, ValueError, "mask_blur"),
    ({"crop_margin": -0.5}, ValueError, "crop_margin"),
    ({"image": "image.png"}, TypeError, "PIL image"),
    (
        {"callback_on_step_end_tensor_inputs": ["secret"], "blend": False, "callback_on_step_end": lambda *a: a[-1]},
        ValueError,
        "not offered",
    ),
]


@pytest.mark.parametrize("arguments, error, message", BAD_INPUTS)
def test_bad_input_is_refused_before_any_denoising(pipe, image, mask, arguments, error, message):
    calls = count_unet_calls(pipe)
    with pytest.raises(error, match=message):
        fast_call(pipe, **{"image": image, "mask_image": mask, **arguments})
    assert calls[0] == 0


def test_scheduler_without_alphas_cumprod_is_refused(pipe, image, mask):
    class NoAlphas:
        config = {}
        order = 1

        def step(self, *args): ...

        def add_noise(self, *args): ...

        def set_timesteps(self, *args, **kwargs): ...

    pipe.scheduler = NoAlphas()
    calls = count_unet_calls(pipe)
    with pytest.raises(ValueError, match="alphas_cumprod"):
        fast_call(pipe, image, mask)
    assert calls[0] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_fp16_and_model_cpu_offload(image, mask):
    pipe = tiny_pipeline()
    pipe.enable_model_cpu_offload()
    out = fast_call(pipe, image, mask, mixed_precision="fp16")
    assert np.isfinite(out.images).all()
    assert_background_exact(out.images, image, mask)


@pytest.mark.parametrize("name", ["img", "img2"])
def test_real_photographs_keep_their_background(pipe, name):
    from pathlib import Path

    inputs = Path(__file__).parent.parent / "examples" / "inputs"
    photo = PIL.Image.open(inputs / f"{name}.png")
    mask = PIL.Image.open(inputs / f"mask{name[3:]}.png")
    out = fast_call(pipe, photo, mask)
    assert out.images.shape == (2, photo.height, photo.width, 3)
    source = np.asarray(photo.convert("RGB")).astype(np.float32) / 255
    keep = np.asarray(mask.convert("L")) < 128
    assert 0 < keep.mean() < 1
    for result in out.images:
        assert np.array_equal(result[keep], source[keep])


def test_soft_mask_blends_a_ramp_and_keeps_zero_pixels_exact(pipe, image, mask):
    from blended_pipeline.image_io import load_mask
    from blended_pipeline.region import feather

    out = fast_call(pipe, image, mask, mask_blur=2.0)
    soft = feather(load_mask(mask, (24, 40)), 2.0)[0, 0].numpy()
    source = np.asarray(image).astype(np.float32) / 255
    zero = soft == 0
    ramp = (soft > 0) & (soft < 1)
    assert zero.any() and ramp.any()
    for result in out.images:
        assert np.array_equal(result[zero], source[zero])
        assert not np.array_equal(result[ramp], source[ramp])


def large_edit(rows: slice, cols: slice) -> tuple[PIL.Image.Image, PIL.Image.Image]:
    """A 160x96 random picture and a mask of the box ``rows``, ``cols``: larger than the tiny UNet's 16 pixels."""
    rng = np.random.default_rng(1)
    large = PIL.Image.fromarray(rng.integers(0, 256, size=(96, 160, 3), dtype=np.uint8))
    array = np.zeros((96, 160), dtype=np.uint8)
    array[rows, cols] = 255
    return large, PIL.Image.fromarray(array)


class SeeImage(PipelineCallback):
    """Keeps the input each step is blended with: what the pipeline edits, at the model's resolution."""

    tensor_inputs = ["image"]

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        self.seen.append(callback_kwargs["image"])
        return callback_kwargs


def test_large_image_is_edited_on_a_crop_around_the_mask(pipe):
    from blended_pipeline.image_io import load_image, load_mask
    from blended_pipeline.region import crop_box, to_resolution

    large, mask = large_edit(slice(60, 72), slice(100, 116))
    see = SeeImage()
    out = fast_call(pipe, large, mask, callback_on_step_end=see)
    assert out.images.shape == (2, 96, 160, 3)
    assert_background_exact(out.images, large, mask)
    top, left, bottom, right = crop_box(load_mask(mask, (96, 160)), 16, 0.25)
    assert (bottom - top, right - left) == (24, 24)
    expected, _ = to_resolution(load_image(large)[..., top:bottom, left:right], torch.ones(1, 1, 24, 24), (16, 16))
    assert torch.equal(see.seen[0], expected.expand(2, -1, -1, -1))  # one row per result


def test_zoom_edits_a_small_mask_on_a_tighter_crop_enlarged_and_ranks_in_the_unzoomed_one(pipe):
    from blended_pipeline.image_io import load_image
    from blended_pipeline.region import to_resolution

    large, mask = large_edit(slice(60, 66), slice(100, 106))  # 6 pixels: edited on 8 at zoom 0.75, else on 16
    plain = fast_call(pipe, large, mask, crop_margin=0.1)
    unzoomed = pipe.ranking
    see = SeeImage()
    out = fast_call(pipe, large, mask, crop_margin=0.1, zoom=0.75, callback_on_step_end=see)
    assert_background_exact(out.images, large, mask)
    crop = load_image(large)[..., 59:67, 99:107]  # the 8-pixel square centred on the mask
    expected, _ = to_resolution(crop, torch.ones(1, 1, 8, 8), (16, 16))
    assert torch.equal(see.seen[0], expected.expand(2, -1, -1, -1))
    assert unzoomed.to_view is None and pipe.ranking.to_view is not None
    assert torch.equal(pipe.ranking.image, unzoomed.image) and torch.equal(pipe.ranking.mask, unzoomed.mask)
    assert not np.array_equal(out.images, plain.images)


def seeded(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def test_a_list_of_prompts_is_one_batch_equal_to_one_call_per_edit(pipe, image, mask):
    rng = np.random.default_rng(5)
    other = PIL.Image.fromarray(rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8))
    other_mask = np.zeros((24, 40), dtype=np.uint8)
    other_mask[2:10, 20:36] = 255
    calls = count_unet_calls(pipe)
    batched = fast_call(
        pipe,
        [image, other],
        [mask, PIL.Image.fromarray(other_mask)],
        prompt=["a red ball", "a blue square"],
        generator=seeded(0, 1, 2, 3),
    )
    assert calls[0] == 4  # one batch: a UNet call per step for all four results
    first = fast_call(pipe, image, mask, prompt="a red ball", generator=seeded(0, 1))
    second = fast_call(pipe, other, PIL.Image.fromarray(other_mask), prompt="a blue square", generator=seeded(2, 3))
    assert batched.images.shape == (4, 24, 40, 3)
    assert np.allclose(batched.images, np.concatenate([first.images, second.images]), atol=1e-4)
    assert np.allclose(batched.scores, first.scores + second.scores, atol=1e-4)
    assert batched.scores[:2] == sorted(batched.scores[:2], reverse=True)


def test_one_image_and_mask_serve_every_prompt_and_sizes_may_differ_with_pil(pipe, image, mask):
    out = fast_call(pipe, image, mask, prompt=["a red ball", "a blue ball", "a red square"], output_type="pil")
    assert len(out.images) == 6 and len(out.scores) == 6
    small = image.resize((30, 18))
    mixed = fast_call(pipe, [image, small], [mask, mask.resize((30, 18))], prompt=["a red ball"] * 2, output_type="pil")
    assert [picture.size for picture in mixed.images] == [(40, 24)] * 2 + [(30, 18)] * 2
    keep = np.asarray(mask.resize((30, 18))) == 0
    for result in mixed.images[2:]:
        assert np.array_equal(np.asarray(result)[keep], np.asarray(small)[keep])


@pytest.mark.parametrize("clip_view", ["masked", "crop"])
def test_clip_view_decides_what_the_guidance_sees(clip_view):
    from blended_pipeline.augment import ProjectiveAugmentation, crop_to_mask
    from blended_pipeline.guidance import GuidanceLoss

    class Recording:
        seen: list[torch.Tensor] = []

        def loss(self, images, target):
            self.seen.append(images.detach())
            return images.mean(dim=(1, 2, 3))

    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 2:6, 3:7], mask[1, :, 8:16, 0:12] = 1, 1
    x0_hat = torch.rand(2, 3, 16, 16) * 2 - 1
    guidance = Recording()
    loss = GuidanceLoss(guidance, None, mask, ProjectiveAugmentation(), 1, 1.0, 0.0, clip_view=clip_view)
    loss(x0_hat, x0_hat, torch.tensor(0.5))
    expected = x0_hat * mask if clip_view == "masked" else crop_to_mask(x0_hat * mask, mask)
    torch.testing.assert_close(guidance.seen[0], expected)
    if clip_view == "crop":  # the small region fills the view: most of it is the region, little black surround
        assert (expected[0].abs().sum(dim=0) > 0).float().mean() > 0.6 > (x0_hat[0] * mask[0]).ne(0).float().mean()


@pytest.mark.parametrize("value", [0, 1.5, -0.1, float("inf"), "small"])
def test_guidance_area_reference_must_be_a_fraction_of_the_image(pipe, image, mask, value):
    with pytest.raises(ValueError, match="guidance_area_reference must be"):
        fast_call(pipe, image, mask, guidance_area_reference=value)


def test_guidance_area_reference_changes_the_edit(pipe, image, mask):
    plain = fast_call(pipe, image, mask, num_inference_steps=2)
    scaled = fast_call(pipe, image, mask, num_inference_steps=2, guidance_area_reference=0.9)
    assert not np.array_equal(plain.images, scaled.images)


def test_surround_start_noises_the_filled_input_and_unknown_starts_are_refused(pipe, image, mask, monkeypatch):
    from blended_pipeline.region import fill_from_surround

    starts, regions = [], []
    add_noise = pipe.scheduler.add_noise
    monkeypatch.setattr(pipe.scheduler, "add_noise", lambda x, *rest: starts.append(x) or add_noise(x, *rest))

    def keep_region(pipeline, step, timestep, tensors):
        regions.append((tensors["image"], tensors["mask"]))
        return {}

    region = dict(callback_on_step_end=keep_region, callback_on_step_end_tensor_inputs=("image", "mask"))
    plain = fast_call(pipe, image, mask, strength=0.5, **region)
    first_plain_start, starts[:] = starts[0], []
    filled = fast_call(pipe, image, mask, strength=0.5, masked_start="surround", **region)
    model_image, model_mask = regions[-1]
    torch.testing.assert_close(first_plain_start, model_image)
    torch.testing.assert_close(starts[0], fill_from_surround(model_image, model_mask))
    assert not torch.equal(starts[0], model_image)
    assert not np.array_equal(plain.images, filled.images)
    outside = np.asarray(mask) <= 127
    np.testing.assert_array_equal(filled.images[:, outside], plain.images[:, outside])
    with pytest.raises(ValueError, match="masked_start must be one of"):
        fast_call(pipe, image, mask, masked_start="noise")


def test_crop_view_changes_the_edit_and_unknown_views_are_refused(pipe, image, mask):
    from blended_pipeline.augment import crop_to_mask

    masked = fast_call(pipe, image, mask, num_inference_steps=2)
    cropped = fast_call(pipe, image, mask, num_inference_steps=2, clip_view="crop")
    assert not np.array_equal(masked.images, cropped.images)
    with pytest.raises(ValueError, match="clip_view must be one of"):
        fast_call(pipe, image, mask, clip_view="zoom")
    pictures = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(crop_to_mask(pictures, torch.zeros(1, 1, 8, 8)), pictures)  # empty mask: all of it


def test_latent_output_is_the_unprocessed_sample_at_the_unets_resolution(pipe, image, mask):
    last = {}

    def keep_last(pipeline, step_index, timestep, tensors):
        last["latents"] = tensors["latents"].clone()
        return tensors

    out = fast_call(pipe, image, mask, output_type="latent", callback_on_step_end=keep_last)
    assert out.scores is None and out.images.shape == (2, 3, 16, 16)
    assert torch.equal(out.images, last["latents"])  # the final sample itself: not clamped, ranked or pasted


def test_the_pixel_pipeline_returns_the_best_of_its_candidates(pipe, image, mask):
    every = fast_call(pipe, image, mask, num_images_per_prompt=4, rank_rivals="ball,box")
    best = fast_call(pipe, image, mask, num_images_per_prompt=2, candidates_per_result=2, rank_rivals="ball,box")
    assert np.array_equal(best.images, every.images[:2])
    assert best.scores == pytest.approx(every.scores[:2])
