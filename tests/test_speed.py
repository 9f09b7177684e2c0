"""What the speed work must not change: results, the caller's models, and a pipeline where no compiler exists."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from helpers import fast_call, tiny_latent_pipeline

from blended_pipeline.guidance import gradients_for_samples_only, guided_noise_prediction, is_guided_step


def test_guidance_gradient_is_the_same_with_frozen_parameters_and_flags_come_back():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 3, 3, padding=1)
    )
    model.requires_grad_(True)
    model[0].bias.requires_grad_(False)  # a flag the caller set stays as it was
    sample = torch.randn(2, 3, 8, 8)

    def loss(x0_hat, x_t, alpha_bar):
        return x0_hat.square().sum()

    free, _ = guided_noise_prediction(model, sample, torch.tensor(0.5), loss)
    with gradients_for_samples_only(model, None):
        assert not any(p.requires_grad for p in model.parameters())
        frozen, _ = guided_noise_prediction(model, sample, torch.tensor(0.5), loss)
    torch.testing.assert_close(frozen, free)
    assert [p.requires_grad for p in model.parameters()] == [True, False, True, True]
    assert all(p.grad is None for p in model.parameters())


def test_a_call_leaves_the_models_parameters_requiring_gradients(pipe, image, mask):
    pipe.unet.requires_grad_(True)
    fast_call(pipe, image, mask)
    assert all(p.requires_grad for p in pipe.unet.parameters())
    assert all(p.requires_grad for p in pipe.clip_model.parameters())
    assert all(p.grad is None for p in pipe.unet.parameters())


def test_compiled_pipeline_gives_the_eager_results(pipe, image, mask):
    """The "eager" backend traces with dynamo without a C++ build: the test checks the wiring, in seconds."""
    expected = fast_call(pipe, image, mask)
    compiled = pipe.compile(backend="eager")
    assert compiled == ["unet", "clip_model.vision_model"]
    out = fast_call(pipe, image, mask)
    np.testing.assert_allclose(out.images, expected.images, atol=1e-5)
    assert set(pipe.unet.state_dict()) == set(type(pipe.unet)(**pipe.unet.config).state_dict())  # keys unchanged


def test_a_channels_last_unet_gives_the_same_results(pipe, image, mask):
    """NHWC is a layout of the same weights: the edit is the same up to the kernels' rounding."""
    expected = fast_call(pipe, image, mask)
    pipe.unet.to(memory_format=torch.channels_last)
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    out = fast_call(pipe, image, mask)
    np.testing.assert_allclose(out.images, expected.images, atol=1e-4)
    assert out.scores == pytest.approx(expected.scores, abs=1e-5)


def test_compile_without_a_compiler_warns_and_stays_eager(pipe, image, mask, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="C\\+\\+ compiler"):
        assert pipe.compile() == []
    assert pipe.unet._compiled_call_impl is None
    fast_call(pipe, image, mask)


def test_latent_pipeline_compiles_its_unet_only():
    latent = tiny_latent_pipeline(with_clip=True)
    assert latent.compile(backend="eager") == ["unet"]


def test_guidance_every_k_steps_guides_those_steps_and_runs_the_others_forward_only(pipe, image, mask):
    clip_calls, unet_backward = [], []
    pipe.clip_model.register_forward_pre_hook(lambda *_: clip_calls.append(1))
    pipe.unet.conv_out.register_full_backward_hook(lambda *_: unet_backward.append(1))
    fast_call(pipe, image, mask, num_inference_steps=6, guidance_every=3)
    assert len(unet_backward) == 2  # steps 0 and 3 of 6
    assert len(clip_calls) == 2 + 2  # and the ranking ("both": the masked region, then the whole result)
    every_step = fast_call(pipe, image, mask, num_inference_steps=6, guidance_every=1)
    default = fast_call(pipe, image, mask, num_inference_steps=6)
    np.testing.assert_array_equal(every_step.images, default.images)
    sparse = fast_call(pipe, image, mask, num_inference_steps=6, guidance_every=3)
    assert not np.array_equal(sparse.images, default.images)


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_guidance_every_must_be_a_positive_integer(pipe, image, mask, value):
    with pytest.raises(ValueError, match="guidance_every must be an integer >= 1"):
        fast_call(pipe, image, mask, guidance_every=value)


@pytest.mark.parametrize(
    "every, end, guided",
    [(1, 1.0, list(range(10))), (1, 0.5, [0, 1, 2, 3, 4]), (2, 0.5, [0, 2, 4]), (3, 0.7, [0, 3, 6]), (1, 0.01, [0])],
)
def test_guided_steps_are_every_kth_among_the_first_fraction(every, end, guided):
    assert [step for step in range(10) if is_guided_step(step, 10, every, end)] == guided


def test_guidance_end_guides_the_first_steps_and_runs_the_rest_forward_only(pipe, image, mask):
    unet_backward, clip_calls = [], []
    pipe.unet.conv_out.register_full_backward_hook(lambda *_: unet_backward.append(1))
    pipe.clip_model.register_forward_pre_hook(lambda *_: clip_calls.append(1))
    ended = fast_call(pipe, image, mask, num_inference_steps=6, guidance_end=0.5)
    assert len(unet_backward) == 3  # steps 0, 1 and 2 of 6
    assert len(clip_calls) == 3 + 2  # and the ranking
    every_step = fast_call(pipe, image, mask, num_inference_steps=6)
    assert not np.array_equal(ended.images, every_step.images)


@pytest.mark.parametrize("value", [0, -0.5, 1.5, float("nan"), "half"])
def test_guidance_end_must_be_a_fraction(pipe, image, mask, value):
    with pytest.raises(ValueError, match="guidance_end must be"):
        fast_call(pipe, image, mask, guidance_end=value)


def test_a_call_without_steps_uses_the_checkpoints_default_steps(pipe, image, mask, tmp_path):
    from blended_pipeline import BlendedDiffusionPipeline

    assert pipe.config.default_num_inference_steps == 100  # a checkpoint that names none: the paper's
    configured = BlendedDiffusionPipeline(**{**pipe.components, "default_num_inference_steps": 6})
    configured.save_pretrained(tmp_path)
    loaded = BlendedDiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    forward = []
    loaded.unet.register_forward_pre_hook(lambda *_: forward.append(1))
    fast_call(loaded, image, mask, num_inference_steps=None, strength=0.5)
    assert len(forward) == 3
    with pytest.raises(ValueError, match="default_num_inference_steps must be an integer >= 1"):
        BlendedDiffusionPipeline(**{**pipe.components, "default_num_inference_steps": 0})
