"""Which model family a checkpoint directory holds, read from its ``model_index.json`` before anything loads.

A family is the per-model part of blended latent editing (how the prompt is encoded, how the denoiser predicts,
how the input's latents are noised); each has its pipeline class, sharing the latent loop. The components a
directory names tell the family, whichever pipeline wrote it (diffusers' text-to-image, img2img or inpaint
pipelines, or this package's).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

LATENT_FAMILIES = {
    "sd": "blended_pipeline.pipeline_latent.BlendedLatentDiffusionPipeline",
    "sdxl": "blended_pipeline.pipeline_sdxl.BlendedLatentDiffusionXLPipeline",
    "sd3": "blended_pipeline.pipeline_sd3.BlendedLatentDiffusion3Pipeline",
    "flux": "blended_pipeline.pipeline_flux.BlendedLatentFluxPipeline",
}
"""Each latent family's pipeline class."""
FLOW_MATCHING = ("sd3", "flux")
"""Families whose denoiser predicts a flow's velocity: they run flow-matching schedulers only."""
GUIDANCE_DISTILLED = ("flux",)
"""Families that take the guidance weight as an input and run no classifier-free guidance (no negative prompt)."""


def family_of(index: Mapping[str, Any]) -> str:
    """ "sd", "sdxl", "sd3" or "flux" for a latent diffusion checkpoint's index, "pixel" for a pixel one."""
    transformer = _class_of(index, "transformer")
    if transformer is not None:
        families = {"SD3Transformer2DModel": "sd3", "FluxTransformer2DModel": "flux"}
        if transformer not in families:
            raise ValueError(f"its transformer is a {transformer}; blended editing knows {', '.join(families)}")
        return families[transformer]
    if _class_of(index, "text_encoder_2") is not None:
        return "sdxl"
    if _class_of(index, "text_encoder") is not None:
        return "sd"
    return "pixel"


def kind_of(family: str) -> str:
    """The pipeline kind a family's checkpoint runs in: "pixel" or "latent" (which settings of the table apply)."""
    return "pixel" if family == "pixel" else "latent"


def latent_pipeline_class(family: str) -> type:
    """The pipeline class of a latent ``family``."""
    if family not in LATENT_FAMILIES:
        raise ValueError(f"no latent pipeline for the {family!r} family; known: {', '.join(LATENT_FAMILIES)}")
    module, _, name = LATENT_FAMILIES[family].rpartition(".")
    return getattr(importlib.import_module(module), name)


def _class_of(index: Mapping[str, Any], component: str) -> str | None:
    """The class a ``model_index.json`` names for ``component``; None where it names none (absent, or null)."""
    entry = index.get(component)
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[1] is not None:
        return entry[1]
    return None
