"""Blended Diffusion (Avrahami et al., CVPR 2022) on Hugging Face diffusers.

The public names load on first use, so that ``import blended_pipeline`` (and the CLI's ``--help``) does not wait
for torch and diffusers.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

SHAPES_CHECKPOINT = str(Path(__file__).parent / "shapes" / "checkpoint")
"""A diffusers pipeline directory of the shapes world's trained models, shipped with the package."""
SHAPES_LATENT_CHECKPOINT = str(Path(__file__).parent / "shapes" / "latent_checkpoint")
"""The shapes world's latent models (a small VAE and a text-conditioned UNet) for the latent pipeline."""

_HOMES = {
    "BackgroundPreservationLoss": "guidance",
    "BlendCallback": "blending",
    "BlendedDiffusionPipeline": "pipeline",
    "BlendedDiffusionPipelineOutput": "pipeline",
    "BlendedLatentDiffusion3Pipeline": "pipeline_sd3",
    "BlendedLatentDiffusionPipeline": "pipeline_latent",
    "BlendedLatentDiffusionXLPipeline": "pipeline_sdxl",
    "BlendedLatentFluxPipeline": "pipeline_flux",
    "BlendedPipelineOutput": "loop",
    "CLIPGuidance": "guidance",
    "Guidance": "guidance",
    "GuidanceLoss": "guidance",
    "ProgressiveDilationBlendCallback": "blending",
    "ProjectiveAugmentation": "augment",
    "RestartFromBestCallback": "restart",
    "ShrinkingMaskBlendCallback": "blending",
    "guided_noise_prediction": "guidance",
}

__all__ = [*sorted(_HOMES), "SHAPES_CHECKPOINT", "SHAPES_LATENT_CHECKPOINT"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"blended_pipeline.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'blended_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
