"""Restarting from the best: a step-end callback that spends the rest of the run on the results going right.

A result's shape is settled early in the run and its details late, and most refused results have the wrong shape
while one of an edit's results usually has the right one. So partway in, each edit's samples are ranked on their
``x0_hat`` pasted into the input, as the final results will be, and the others restart from copies of the best.
Each copy draws its own noise from there on, so the copies part again into different results (less different
than results that never met: docs/research-log.md, Hard edits, measures both). Under a sampler that draws no noise
(DDIM at ``eta=0``) they would stay near-copies, so ``restart_at`` restarts only with one that does
(``draws_noise``); the callback, passed by hand, runs under any.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from diffusers.callbacks import PipelineCallback


class RestartFromBestCallback(PipelineCallback):
    """At the fraction ``at`` of the run, each edit's results below its best ``keep`` become copies of those.

    The samples are ranked by the call's own ranking (``pipeline.ranking``) on ``x0_hat`` with the input outside
    the mask. With ``keep`` > 1 the copies go round the kept results, best first.
    """

    tensor_inputs = ["latents", "pred_original_sample"]

    def __init__(self, at: float = 0.3, keep: int = 1) -> None:
        if not 0 < at < 1:
            raise ValueError(f"at must be in (0, 1) (a fraction of the run), got {at}")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1, got {keep!r}")
        super().__init__(cutoff_step_ratio=1.0)
        self.at = at
        self.keep = keep

    def callback_fn(
        self, pipeline: Any, step_index: int, timestep: int, callback_kwargs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        if step_index != round(self.at * pipeline.num_timesteps):
            return callback_kwargs
        order, _ = pipeline.ranking.of_samples(callback_kwargs["pred_original_sample"])
        callback_kwargs["latents"] = copies_of_best(
            callback_kwargs["latents"], order, pipeline.ranking.group_size, self.keep
        )
        return callback_kwargs


def copies_of_best(samples: torch.Tensor, order: torch.Tensor, group_size: int, keep: int) -> torch.Tensor:
    """``samples`` with each group's rows below its best ``keep`` (``order``: best first within each group of
    ``group_size``) replaced by copies of those, in turn."""
    ranked = order.view(-1, group_size)
    sources = ranked[:, torch.arange(group_size, device=order.device) % min(keep, group_size)]
    restarted = samples.clone()
    restarted[ranked.flatten()] = samples[sources.flatten()]
    return restarted


DPM_SOLVER_ALGORITHMS = ("dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++")

NOISE_ADVICE = {
    "eta": "pass eta > 0",
    "algorithm_type": "configure it with algorithm_type='sde-dpmsolver++'",
    "stochastic_sampling": "configure it with stochastic_sampling=True",
    None: "swap in a scheduler that draws noise (DDPM)",
}
"""What makes a scheduler draw noise, said as advice, by the knob that sets it (``noise_knob``)."""


def noise_knob(scheduler: Any) -> str | None:
    """What sets whether ``scheduler``'s step draws noise: DDIM's ``eta`` (DDIM, TCD), DPM-Solver's
    ``algorithm_type``, flow-matching Euler's ``stochastic_sampling``; None where the sampler alone decides."""
    if takes_eta(scheduler):
        return "eta"
    if scheduler.config.get("algorithm_type") in DPM_SOLVER_ALGORITHMS:
        return "algorithm_type"
    if "stochastic_sampling" in scheduler.config:
        return "stochastic_sampling"
    return None


def draws_noise(scheduler: Any, eta: float) -> bool:
    """Whether ``scheduler``'s step, as the pipelines call it (DDIM's ``eta`` given, Euler's ``s_churn`` left at 0),
    adds noise of its own from the generator: DDIM and TCD where ``eta`` > 0, DPM-Solver in its SDE forms,
    flow-matching Euler with ``stochastic_sampling``; DDPM and the ancestral, consistency and SA-Solver samplers
    always; a step that takes no generator never."""
    parameters = inspect.signature(scheduler.step).parameters
    if "generator" not in parameters:
        return False
    knob = noise_knob(scheduler)
    if knob == "eta":
        return eta > 0
    if knob == "algorithm_type":
        return scheduler.config["algorithm_type"].startswith("sde")
    if knob == "stochastic_sampling":
        return bool(scheduler.config["stochastic_sampling"])
    return "s_churn" not in parameters


def to_draw_noise(scheduler: Any) -> str:
    """What makes ``scheduler`` draw noise (``draws_noise``), said as advice."""
    return NOISE_ADVICE[noise_knob(scheduler)]


def sampler_words(scheduler: Any, eta: float) -> str:
    """The sampler named for a message: its class, and DDIM's ``eta`` where its step takes one."""
    return type(scheduler).__name__ + (f" at eta={eta:g}" if takes_eta(scheduler) else "")


def takes_eta(scheduler: Any) -> bool:
    """Whether ``scheduler``'s step takes DDIM's ``eta`` (DDIM, TCD), which sets the noise it draws."""
    return "eta" in inspect.signature(scheduler.step).parameters
