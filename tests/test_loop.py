"""The step-end callback chain and interruption (``loop``): default blending first, then the user's
callback (a ``PipelineCallback`` or a plain function) with the tensors it names; ``_interrupt`` stops early."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import Recorder, fast_call

from blended_pipeline import BlendCallback


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
