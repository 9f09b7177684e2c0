"""Restarting from the best sample part-way (``restart``): the copies, the callback, ``restart_at`` and the
checkpoint's ``default_restart_at``."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from diffusers.callbacks import MultiPipelineCallbacks
from helpers import StepLatents, fast_call

from blended_pipeline.restart import RestartFromBestCallback, copies_of_best, draws_noise, to_draw_noise


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
    loaded.scheduler = diffusers.DDIMScheduler.from_config(loaded.scheduler.config)  # draws no noise at eta 0
    assert fast_call(loaded, image, mask).settings["restart_at"] == 0.0
    with pytest.raises(ValueError, match="DDIMScheduler at eta=0 draws no noise"):
        fast_call(loaded, image, mask, restart_at=0.5)
    with pytest.raises(ValueError, match="default_restart_at must be in"):
        BlendedDiffusionPipeline(**{**pipe.components, "default_restart_at": -0.1})


@pytest.mark.parametrize(
    "name, config, eta, expected",
    [
        ("DDPMScheduler", {}, 0.0, True),
        ("DDIMScheduler", {}, 0.0, False),
        ("DDIMScheduler", {}, 0.5, True),
        ("DPMSolverMultistepScheduler", {}, 0.0, False),
        ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, 0.0, True),
        ("EulerDiscreteScheduler", {}, 0.0, False),
        ("EulerAncestralDiscreteScheduler", {}, 0.0, True),
        ("PNDMScheduler", {}, 0.0, False),
        ("UniPCMultistepScheduler", {}, 0.0, False),
        ("FlowMatchEulerDiscreteScheduler", {}, 0.0, False),
        ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}, 0.0, True),
        ("SASolverScheduler", {}, 0.0, True),
        ("TCDScheduler", {}, 0.0, False),
        ("TCDScheduler", {}, 0.3, True),
        ("LCMScheduler", {}, 0.0, True),
    ],
)
def test_draws_noise_says_which_samplers_can_part_a_restarts_copies(name, config, eta, expected):
    assert draws_noise(getattr(diffusers, name)(**config), eta) is expected


def test_to_draw_noise_advises_by_what_the_scheduler_takes():
    assert to_draw_noise(diffusers.DDIMScheduler()) == "pass eta > 0"
    assert "sde-dpmsolver++" in to_draw_noise(diffusers.DPMSolverMultistepScheduler())
    assert "stochastic_sampling=True" in to_draw_noise(diffusers.FlowMatchEulerDiscreteScheduler())
    assert "DDPM" in to_draw_noise(diffusers.PNDMScheduler())
