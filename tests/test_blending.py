"""Blending callbacks (``blending``): the blend itself, progressive dilation, and the noise level of the input
each blend uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.callbacks import MultiPipelineCallbacks
from helpers import Recorder, fast_call

from blended_pipeline import BlendCallback, ProgressiveDilationBlendCallback


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
        if step + 1 < len(timesteps):
            # Noise level of t-1 (the sample after this step), not t: the std of x_bg - sqrt(abar) x is sqrt(1-abar).
            alpha_bar = pipe.scheduler.alphas_cumprod[timesteps[step + 1]]
            noise = seen["noised_image"] - alpha_bar.sqrt() * seen["image"]
            assert noise.std().item() == pytest.approx(math.sqrt(1 - alpha_bar), rel=0.1)
        else:
            assert torch.equal(seen["noised_image"], seen["image"].expand_as(seen["noised_image"]))


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
