"""Blended Diffusion (Avrahami et al., CVPR 2022) on Hugging Face diffusers."""

from pathlib import Path

from blended_pipeline.augment import ProjectiveAugmentation
from blended_pipeline.blending import BlendCallback, ProgressiveDilationBlendCallback
from blended_pipeline.guidance import (
    BackgroundPreservationLoss,
    CLIPGuidance,
    Guidance,
    GuidanceLoss,
    guided_noise_prediction,
)
from blended_pipeline.pipeline import BlendedDiffusionPipeline, BlendedDiffusionPipelineOutput

SHAPES_CHECKPOINT = str(Path(__file__).parent / "shapes" / "checkpoint")
"""A diffusers pipeline directory of the shapes world's trained models, shipped with the package."""

__all__ = [
    "BackgroundPreservationLoss",
    "BlendCallback",
    "BlendedDiffusionPipeline",
    "BlendedDiffusionPipelineOutput",
    "CLIPGuidance",
    "Guidance",
    "GuidanceLoss",
    "ProgressiveDilationBlendCallback",
    "ProjectiveAugmentation",
    "SHAPES_CHECKPOINT",
    "guided_noise_prediction",
]
