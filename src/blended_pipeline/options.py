"""Every tunable setting's default, choices and check, defined once for the pipeline, the CLI and the benchmarks.

This module imports neither torch nor diffusers, so the CLI can check its arguments before the heavy imports.
Checks raise ``ValueError`` (``TypeError`` for a prompt that is not a string) naming the setting as the caller
knows it (``names`` maps the pipeline's argument names to, say, the CLI's flags) and what is expected.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

RankBy = Literal["masked", "whole", "both"]
OutputType = Literal["pil", "np", "pt"]
ClipInput = Literal["x0_hat", "mixed"]
ClipView = Literal["masked", "crop"]
MaskedStart = Literal["input", "surround"]
BackgroundLossName = Literal["lpips", "mse"]
MixedPrecision = Literal["no", "fp16", "bf16"]
LatentMask = Literal["conservative", "nearest"]
Reconstruction = Literal["paste", "decoder"]

RANK_BY: tuple[str, ...] = get_args(RankBy)
OUTPUT_TYPES: tuple[str, ...] = get_args(OutputType)
CLIP_INPUTS: tuple[str, ...] = get_args(ClipInput)
CLIP_VIEWS: tuple[str, ...] = get_args(ClipView)
MASKED_STARTS: tuple[str, ...] = get_args(MaskedStart)
BACKGROUND_LOSSES: tuple[str, ...] = get_args(BackgroundLossName)
MIXED_PRECISIONS: tuple[str, ...] = get_args(MixedPrecision)
LATENT_MASKS: tuple[str, ...] = get_args(LatentMask)
RECONSTRUCTIONS: tuple[str, ...] = get_args(Reconstruction)
SCHEDULERS: dict[str, str] = {
    "ddpm": "DDPMScheduler",
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",  # latent pipeline only: CLIP guidance needs unscaled samples
}
"""The schedulers offered by name (CLI, benchmarks): diffusers class names; any other swaps in by ``from_config``."""


@dataclass(frozen=True)
class Defaults:
    """The pipeline's defaults; ``BlendedDiffusionPipeline.__call__`` and ``blended-edit`` both read them here."""

    num_inference_steps: int = 100
    num_images_per_prompt: int = 4
    clip_guidance_scale: float = 1000.0
    num_augmentations: int = 8
    guidance_every: int = 1  # guide every step, as the paper does
    guidance_end: float = 1.0  # guide until the last step, as the paper does
    range_loss_scale: float = 50.0
    background_loss_scale: float = 0.0
    background_loss: BackgroundLossName = "lpips"  # the paper's D_bg: 0.5 * (MSE + LPIPS)
    clip_input: ClipInput = "x0_hat"
    clip_view: ClipView = "masked"  # the paper's: the whole image, the outside of the mask blacked out
    guidance_area_reference: float | None = None  # the paper's: one guidance weight whatever the mask's area
    masked_start: MaskedStart = "input"  # the paper's: the input noised, inside the mask too
    mask_blur: float = 0.0
    crop_margin: float = 0.25
    rank_by: RankBy = "both"
    rank_border_weight: float = 0.0  # the ranking by CLIP alone
    restart_at: float = 0.0  # no restart from the best, as the paper
    eta: float = 0.0
    output_type: OutputType = "pil"
    scheduler: str = "ddpm"


DEFAULTS = Defaults()
FAST_GUIDANCE_END = 0.7
"""``--fast``: guide the first 70% of the steps. On the shapes edits: 1.6x the speed, top-1 within noise, fewer
results right than guiding every step but more than guiding every 2nd step (docs/benchmarks.md)."""


@dataclass(frozen=True)
class LatentDefaults:
    """``BlendedLatentDiffusionPipeline``'s own defaults (the rest are ``DEFAULTS``): Blended Latent Diffusion's."""

    num_inference_steps: int = 50
    guidance_scale: float = 7.5
    latent_mask: LatentMask = "conservative"  # any masked pixel marks its latent cell
    reconstruction: Reconstruction = "paste"
    scheduler: str = "ddim"


LATENT_DEFAULTS = LatentDefaults()

MIN_IMAGE_SIDE = 16
"""Pixels: a smaller image holds too little for the model's resolution (32 px for shapes, 256 for ADM) to edit."""
MAX_ASPECT_RATIO = 4.0
"""Longer side over shorter: beyond it the square model input squashes the image (when no square crop fits)."""
MAX_EXTENSION = 1.0
"""``--extend`` may add at most this times the image's width across left + right, and its height across top + bottom:
beyond it most of the canvas is invented from a thin strip, which smears it."""


class InputWarning(UserWarning):
    """An input was read in a way its author may not expect (alpha ignored, a prompt cut); said once, in one line."""


def check_image_size(width: int, height: int, name: str) -> None:
    """Refuse an image too small, or too long and thin, for the method; the message names the limit."""
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ValueError(f"{name} is {width}x{height} (WxH): each side must be at least {MIN_IMAGE_SIDE} pixels")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ValueError(
            f"{name} is {width}x{height} (WxH): the longer side may be at most {MAX_ASPECT_RATIO:g} times the shorter"
        )


def check_mask_size(mask_width: int, mask_height: int, width: int, height: int, what: str = "mask_image") -> None:
    """A mask has its image's size, or at least its aspect ratio (to within half a pixel of the larger side)."""
    if abs(mask_height * width - mask_width * height) > max(mask_width, mask_height, width, height) // 2:
        raise ValueError(
            f"{what} is {mask_width}x{mask_height} (WxH) but image is {width}x{height}: the mask must have the "
            "image's size or at least its aspect ratio"
        )


def check_extension(width: int, height: int, left: int, top: int, right: int, bottom: int, name: str) -> None:
    """Refuse growing a ``width`` x ``height`` image by more than ``MAX_EXTENSION`` of its side on an axis."""
    if left + right > MAX_EXTENSION * width or top + bottom > MAX_EXTENSION * height:
        raise ValueError(
            f"{name} {left},{top},{right},{bottom} grows the {width}x{height} image too much: left + right may add "
            f"at most {MAX_EXTENSION:g} x its width ({int(MAX_EXTENSION * width)}), top + bottom at most "
            f"{MAX_EXTENSION:g} x its height ({int(MAX_EXTENSION * height)})"
        )


def scheduler_class(name: str) -> type:
    """The diffusers scheduler class offered under ``name`` (see ``SCHEDULERS``)."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {tuple(SCHEDULERS)}, got {name!r}")
    return getattr(diffusers, SCHEDULERS[name])


def steps_run(num_inference_steps: int, strength: float) -> int:
    """How many of the schedule's steps a call runs: the last ``int(num_inference_steps * strength)``."""
    return int(num_inference_steps * strength)


def check_prompt(prompt: Any, name: str = "prompt") -> None:
    """A prompt is a non-empty string."""
    if not isinstance(prompt, str):
        raise TypeError(f"{name} must be a string or a list of strings, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError(f"{name} is empty: describe what the masked region should show")


def check_strength(name: str, value: float) -> None:
    """A strength is a fraction of the schedule: in (0, 1]."""
    _check_number(name, value)
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value}")


def check_settings(names: Mapping[str, str] | None = None, **settings: Any) -> None:
    """Check the pipeline arguments given (by their pipeline names); ``names`` renames them in messages."""
    names = names or {}

    def name(key: str) -> str:
        return names.get(key, key)

    if settings.get("prompt") is not None:
        check_prompt(settings["prompt"], name("prompt"))
    for key in ("num_inference_steps", "num_images_per_prompt", "num_augmentations", "guidance_every"):
        if key in settings:
            value = settings[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name(key)} must be an integer >= 1, got {value!r}")
    for key in (
        "clip_guidance_scale",
        "guidance_scale",
        "range_loss_scale",
        "background_loss_scale",
        "mask_blur",
        "crop_margin",
        "rank_border_weight",
    ):
        if key in settings:
            _check_number(name(key), settings[key])
            if settings[key] < 0:
                raise ValueError(f"{name(key)} must be >= 0, got {settings[key]}")
    if settings.get("guidance_area_reference") is not None:
        _check_number(name("guidance_area_reference"), settings["guidance_area_reference"])
        if not 0 < settings["guidance_area_reference"] <= 1:
            raise ValueError(
                f"{name('guidance_area_reference')} must be in (0, 1] (a fraction of the image's area) or None, "
                f"got {settings['guidance_area_reference']}"
            )
    if "restart_at" in settings:
        _check_number(name("restart_at"), settings["restart_at"])
        if not 0 <= settings["restart_at"] < 1:
            raise ValueError(
                f"{name('restart_at')} must be in [0, 1) (the fraction of the run at which results restart from "
                f"the best; 0: never), got {settings['restart_at']}"
            )
    if "guidance_end" in settings:
        _check_number(name("guidance_end"), settings["guidance_end"])
        if not 0 < settings["guidance_end"] <= 1:
            raise ValueError(
                f"{name('guidance_end')} must be in (0, 1] (the fraction of the steps run that are guided), "
                f"got {settings['guidance_end']}"
            )
    if settings.get("strength") is not None:
        strength = settings["strength"]
        check_strength(name("strength"), strength)
        steps = settings.get("num_inference_steps")
        if isinstance(steps, int) and steps_run(steps, strength) < 1:
            raise ValueError(
                f"{name('strength')} {strength} of {name('num_inference_steps')} {steps} runs no step; raise either"
            )
    if "eta" in settings:
        _check_number(name("eta"), settings["eta"])
        if not 0 <= settings["eta"] <= 1:
            raise ValueError(
                f"{name('eta')} must be in [0, 1] (0: deterministic DDIM, 1: DDPM-like), got {settings['eta']}"
            )
    for key, choices in (
        ("rank_by", RANK_BY),
        ("output_type", OUTPUT_TYPES),
        ("clip_input", CLIP_INPUTS),
        ("clip_view", CLIP_VIEWS),
        ("masked_start", MASKED_STARTS),
        ("scheduler", tuple(SCHEDULERS)),
        ("latent_mask", LATENT_MASKS),
        ("reconstruction", RECONSTRUCTIONS),
    ):
        if key in settings and settings[key] not in choices:
            raise ValueError(f"{name(key)} must be one of {choices}, got {settings[key]!r}")
    if settings.get("mixed_precision") is not None and settings["mixed_precision"] not in MIXED_PRECISIONS:
        raise ValueError(
            f"{name('mixed_precision')} must be one of {MIXED_PRECISIONS}, got {settings['mixed_precision']!r}"
        )
    background_loss: str | Callable | None = settings.get("background_loss")
    if background_loss is not None and not callable(background_loss) and background_loss not in BACKGROUND_LOSSES:
        raise ValueError(
            f"{name('background_loss')} must be one of {BACKGROUND_LOSSES} or a callable "
            f"(source, images, mask) -> (N,) losses, got {background_loss!r}"
        )


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
