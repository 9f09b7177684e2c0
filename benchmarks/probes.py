"""Instruments hooked into a pipeline run: the last sample before the paste, and model evaluation counts."""

from __future__ import annotations

import torch
from diffusers.callbacks import PipelineCallback

from blended_pipeline import BlendedDiffusionPipeline


class LastSampleProbe(PipelineCallback):
    """Keeps the sample the last step produced, before any blending or the final paste."""

    tensor_inputs = ["latents"]

    def __init__(self) -> None:
        super().__init__(cutoff_step_ratio=1.0)
        self.sample: torch.Tensor | None = None

    def callback_fn(self, pipeline, step_index: int, timestep: int, callback_kwargs: dict) -> dict:
        if step_index + 1 == pipeline.num_timesteps:
            self.sample = callback_kwargs["latents"].clone()
        return callback_kwargs


class EvaluationCounter:
    """Counts images through the UNet and through CLIP's image tower (forward passes, batch rows included)."""

    def __init__(self, pipe: BlendedDiffusionPipeline) -> None:
        self.unet = self.clip = 0
        pipe.unet.register_forward_pre_hook(self._count_unet)
        pipe.clip_model.register_forward_pre_hook(self._count_clip, with_kwargs=True)

    def _count_unet(self, module, args) -> None:
        self.unet += args[0].shape[0]

    def _count_clip(self, module, args, kwargs) -> None:
        self.clip += kwargs["pixel_values"].shape[0]
