"""The table of settings: each setting of an edit once, with its flag, default, range or choices, the pipelines
that take it and its help line.

The pipelines' defaults and checks, the edit request's fields, ``blended-edit``'s options, a manifest's fields and
the page's options are all read from ``SETTINGS``, so adding a setting is a row here and its use in the pipeline.
No torch here: the front ends check what they are given before the heavy imports.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Literal, get_args

from blended_pipeline.rivals import rival_groups

RankBy = Literal["masked", "whole", "both"]
OutputType = Literal["pil", "np", "pt", "latent"]
ClipInput = Literal["x0_hat", "mixed"]
ClipView = Literal["masked", "crop"]
MaskedStart = Literal["input", "surround"]
BackgroundLossName = Literal["lpips", "mse"]
MixedPrecision = Literal["no", "fp16", "bf16"]
LatentMask = Literal["conservative", "nearest"]
Reconstruction = Literal["paste", "decoder", "none"]
BlendNoise = Literal["fresh", "initial"]
Kind = Literal["pixel", "latent"]
RankingRole = Literal["results", "run"]

KINDS: tuple[str, ...] = get_args(Kind)
SCHEDULERS: dict[str, str] = {
    "ddpm": "DDPMScheduler",
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
}
"""The schedulers offered by name (CLI, page, benchmarks): diffusers class names; any other swaps in by
``from_config``."""
LATENT_ONLY_SCHEDULERS = {
    "dpm++": "its multistep update reuses predictions from before the guidance and the blend, and the edited shapes "
    "do not settle (docs/research-log.md, DPM-Solver++ on pixel models)",
    "euler": "CLIP guidance needs unscaled samples and Euler's are sigma-scaled",
}
"""Schedulers the front ends refuse for a pixel model, and why."""
DTYPES = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
"""``--dtype``'s words for ``mixed_precision``."""
CANVAS_FILLS = ("edge", "mirror", "noise")  # how extend_canvas starts the new area (see docs/applications.md)
SCRIBBLE_STRENGTH = 0.5
"""A checkpoint's ``scribble_strength`` where it names none: half the schedule, so the strokes' colours survive."""
FAST_GUIDANCE_END = 0.7
"""``--fast``: guide the first 70% of the steps (its measured cost: docs/benchmarks.md)."""
BOTH: tuple[str, ...] = KINDS
PIXEL: tuple[str, ...] = ("pixel",)
LATENT: tuple[str, ...] = ("latent",)


class UsageError(ValueError):
    """A problem with what was asked (arguments, files, a manifest line, the page's inputs): one line, and the
    command line's exit status 2."""


@dataclass(frozen=True)
class Setting:
    """One setting: how it is named, spelled on the command line, defaulted and checked.

    ``default`` is one value or one per pipeline kind; ``checkpoint`` names the ``model_index.json`` entry that
    overrides it, because what works depends on the model. ``pipelines`` are the kinds whose ``__call__`` takes it
    (empty: the application's, e.g. the seed); ``argument`` renames it there per kind; ``call`` False marks a
    preset that the request turns into other settings (``fast``). ``per_edit``: a manifest line may set it;
    ``page``: the page offers it, under that label. ``ranks``: "results" for a setting that chooses or orders the
    results returned, "run" for one that ranks the samples mid-run; either needs something to rank with
    (``idle_rankings``). ``bounds`` is an interval in the usual notation ("(0, 1]") or ">= 0"/">= 1";
    ``validate(value, name)`` raises ``ValueError`` for a value it refuses and returns its reading of the value.
    """

    name: str
    help: str
    type: type = float
    default: Any = None
    pipelines: tuple[str, ...] = BOTH
    flag: str | None = None
    checkpoint: str | None = None
    bounds: str | None = None
    choices: tuple[Any, ...] | None = None
    meaning: str = ""
    optional: bool = False
    per_edit: bool = True
    call: bool = True
    page: str | None = None
    accepts_callable: bool = False
    ranks: RankingRole | None = None
    argument: Mapping[str, str] = field(default_factory=dict)
    validate: Callable[[Any, str], Any] | None = None

    def default_for(self, kind: str) -> Any:
        """This setting's default for a pipeline of ``kind`` when the checkpoint names none."""
        return self.default.get(kind) if isinstance(self.default, dict) else self.default

    def asks_for(self, value: Any, kind: str) -> bool:
        """Whether ``value`` asks for something other than the table's default for ``kind``, as the setting reads
        it (a validator's reading, where it has one: "" and " " name no rivals alike)."""
        default = self.default_for(kind)
        if self.validate is not None:
            return self.validate(value, self.name) != self.validate(default, self.name)
        return value != default

    def argument_for(self, kind: str) -> str:
        """Its keyword in a ``kind`` pipeline's ``__call__``."""
        return self.argument.get(kind, self.name)

    @property
    def manifest_field(self) -> str:
        """Its name in a manifest line: the flag without dashes (``--guidance-scale`` -> ``guidance_scale``)."""
        return self.flag[2:].replace("-", "_") if self.flag else self.name

    def check(self, value: Any, name: str | None = None) -> None:
        """Raise ``ValueError`` naming the setting (as ``name``) and what it expects."""
        name = name or self.name
        if value is None:  # not given: the default, or None where the setting is optional
            return
        if self.validate is not None:
            self.validate(value, name)
        if self.choices is not None:
            if value not in self.choices and not (self.accepts_callable and callable(value)):
                extra = " or a callable (source, images, mask) -> (N,) losses" if self.accepts_callable else ""
                raise ValueError(f"{name} must be one of {self.choices}{extra}, got {value!r}")
            return
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int) or not within(value, self.bounds):
                raise ValueError(f"{name} must be an integer {self.bounds}, got {value!r}")
            return
        if self.type is float:
            _check_number(name, value)
            if not within(value, self.bounds):
                meaning = f" {self.meaning}" if self.meaning else ""
                if self.bounds.startswith(">="):
                    raise ValueError(f"{name} must be {self.bounds}, got {value}")
                none = " or None" if self.optional else ""
                raise ValueError(f"{name} must be in {self.bounds}{meaning}{none}, got {value}")
            return


def within(value: float, bounds: str | None) -> bool:
    """Whether ``value`` lies in ``bounds`` (">= x", or an interval such as "(0, 1]")."""
    if bounds is None:
        return True
    if bounds.startswith(">="):
        return value >= float(bounds[2:])
    low, high = (float(part) for part in bounds[1:-1].split(","))
    above = value > low if bounds[0] == "(" else value >= low
    below = value < high if bounds[-1] == ")" else value <= high
    return above and below


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "num_inference_steps",
        "steps of the full schedule",
        int,
        {"pixel": 100, "latent": 50},
        flag="--steps",
        checkpoint="default_num_inference_steps",
        bounds=">= 1",
        page="steps",
    ),
    Setting(
        "num_images_per_prompt", "results to return, ranked", int, 4, flag="--samples", bounds=">= 1", page="samples"
    ),
    Setting(
        "mask_blur",
        "feather the mask by this many pixels",
        float,
        0.0,
        flag="--mask-blur",
        bounds=">= 0",
        page="mask blur",
    ),
    Setting(
        "crop_margin", "context around the mask for large images", float, 0.25, flag="--crop-margin", bounds=">= 0"
    ),
    Setting(
        "zoom",
        "edit a small mask on a crop its bounding box spans this share of, enlarged to the model's (0: never)",
        float,
        0.0,
        flag="--zoom",
        checkpoint="default_zoom",
        bounds="[0, 1]",
        meaning="(the share of the crop's side the mask spans; 0: no zoom)",
        page="zoom",
    ),
    Setting(
        "rank_by",
        "score the masked region, the whole image, or both",
        str,
        "both",
        flag="--rank-by",
        choices=get_args(RankBy),
        ranks="results",
    ),
    Setting(
        "eta",
        "DDIM's stochasticity, 0 to 1",
        float,
        0.0,
        flag="--eta",
        bounds="[0, 1]",
        meaning="(0: deterministic DDIM, 1: DDPM-like)",
    ),
    Setting(
        "rank_border_weight",
        "rank results down by this times the colour step across the mask's edge",
        float,
        0.0,
        flag="--rank-border-weight",
        checkpoint="default_rank_border_weight",
        bounds=">= 0",
        ranks="results",
    ),
    Setting(
        "rank_rivals",
        "rank results down that CLIP also takes for the prompt with a name of a group swapped for another "
        "(groups of names: 'circle,square,triangle;cat,dog')",
        str,
        "",
        flag="--rank-rivals",
        checkpoint="default_rank_rivals",
        validate=rival_groups,
        ranks="results",
    ),
    Setting(
        "candidates_per_result",
        "make this many results for each one returned, and return the best (needs the CLIP parts to rank them)",
        int,
        1,
        flag="--candidates",
        checkpoint="default_candidates_per_result",
        bounds=">= 1",
        ranks="results",
    ),
    Setting(
        "rank_denoiser_weight",
        "re-rank the better half of each edit's results by CLIP with this weight on the denoiser's own vote for the "
        "prompt over its rivals, both standardised (0: CLIP alone; needs the CLIP parts)",
        float,
        0.0,
        LATENT,
        flag="--rank-denoiser-weight",
        checkpoint="default_rank_denoiser_weight",
        bounds=">= 0",
        ranks="results",
    ),
    Setting(
        "guidance_scale",
        "guidance weight: CLIP guidance for a pixel model, classifier-free for a latent one",
        float,
        {"pixel": 1000.0, "latent": 7.5},
        flag="--guidance-scale",
        bounds=">= 0",
        argument={"pixel": "clip_guidance_scale"},
    ),
    Setting(
        "num_augmentations",
        "augmented views per result (more views pick the right result more often on small, wide and round masks, "
        "and take longer: docs/research-log.md)",
        int,
        8,
        PIXEL,
        flag="--augmentations",
        bounds=">= 1",
    ),
    Setting(
        "guidance_every",
        "guide every k-th step only, the others one UNet forward pass (faster)",
        int,
        1,
        PIXEL,
        flag="--guidance-every",
        bounds=">= 1",
    ),
    Setting(
        "guidance_end",
        "guide the first fraction of the steps run, the rest one UNet forward pass each (faster)",
        float,
        1.0,
        PIXEL,
        flag="--guidance-end",
        bounds="(0, 1]",
        meaning="(the fraction of the steps run that are guided)",
    ),
    Setting(
        "restart_at",
        "at this fraction of the run, the results restart from copies of the best so far (0: never)",
        float,
        0.0,
        flag="--restart-at",
        checkpoint="default_restart_at",
        bounds="[0, 1)",
        meaning="(the fraction of the run at which results restart from the best; 0: never)",
        ranks="run",
    ),
    Setting(
        "clip_view",
        "what CLIP sees, the masked image or the square around the mask enlarged",
        str,
        "masked",
        PIXEL,
        flag="--clip-view",
        choices=get_args(ClipView),
    ),
    Setting(
        "background_loss_scale",
        "weight of the loss on changes outside the mask (Algorithm 1's lambda)",
        float,
        0.0,
        PIXEL,
        flag="--background-loss-scale",
        bounds=">= 0",
    ),
    Setting(
        "background_loss",
        "lpips, the paper's MSE + LPIPS (its AlexNet weights are downloaded once); mse: offline",
        str,
        "lpips",
        PIXEL,
        flag="--background-loss",
        choices=get_args(BackgroundLossName),
        accepts_callable=True,
    ),
    Setting(
        "negative_prompt", "what the region should not show", str, None, LATENT, flag="--negative-prompt", optional=True
    ),
    Setting(
        "latent_mask",
        "conservative (any masked pixel edits its latent cell) or nearest (Blended Latent Diffusion's)",
        str,
        "conservative",
        LATENT,
        flag="--latent-mask",
        choices=get_args(LatentMask),
    ),
    Setting(
        "reconstruction",
        "paste, or decoder (fit a copy of the decoder to the background first); none: the decoder's pixels over "
        "the whole crop, outside the mask too, as diffusers' inpaint pipelines give them (for comparisons)",
        str,
        "paste",
        LATENT,
        flag="--reconstruction",
        choices=get_args(Reconstruction),
    ),
    Setting(
        "strength",
        "fraction of the schedule run (default: the application's, from the checkpoint's default_strength or "
        "scribble_strength; 1.0 for a new background)",
        float,
        0.75,
        flag="--strength",
        checkpoint="default_strength",
        bounds="(0, 1]",
        page="strength",
    ),
    Setting(
        "blend",
        "Algorithm 1: no blending during the process, only the final paste (use with --background-loss-scale)",
        bool,
        True,
        flag="--no-blend",
        per_edit=False,
    ),
    Setting(
        "mixed_precision",
        "fp32, or bf16/fp16 autocast",
        str,
        None,
        flag="--dtype",
        choices=get_args(MixedPrecision),
        optional=True,
        per_edit=False,
    ),
    Setting("range_loss_scale", "weight of the penalty on x0_hat outside [-1, 1]", float, 50.0, PIXEL, bounds=">= 0"),
    Setting(
        "clip_input",
        "what CLIP judges: x0_hat (the paper) or mixed (the authors' code)",
        str,
        "x0_hat",
        PIXEL,
        choices=get_args(ClipInput),
    ),
    Setting(
        "guidance_area_reference",
        "scale the CLIP weight by this fraction of the image over the mask's area (None: the paper's one weight)",
        float,
        None,
        PIXEL,
        bounds="(0, 1]",
        meaning="(a fraction of the image's area)",
        optional=True,
    ),
    Setting(
        "masked_start",
        "what the first step starts from inside the mask",
        str,
        "input",
        PIXEL,
        choices=get_args(MaskedStart),
    ),
    Setting(
        "blend_noise",
        "the noise the input is brought to each level with: fresh at each step (the paper's), or the start's "
        "reused (diffusers' inpaint pipelines')",
        str,
        "fresh",
        choices=get_args(BlendNoise),
    ),
    Setting("backprop_through_unet", "take the guidance gradient through the UNet", bool, True, PIXEL),
    Setting(
        "output_type",
        "pil, np or pt; latent: the final samples as they are, unranked and not pasted (for a refiner, say)",
        str,
        "pil",
        choices=get_args(OutputType),
    ),
    Setting("seed", "the generator's seed", int, 0, (), flag="--seed", bounds=">= 0", page="seed"),
    Setting(
        "extend_fill",
        "what --extend's new canvas starts as",
        str,
        "edge",
        (),
        flag="--extend-fill",
        choices=CANVAS_FILLS,
    ),
    Setting(
        "scheduler",
        "swap the checkpoint's scheduler (default: keep its own)",
        str,
        None,
        (),
        flag="--scheduler",
        choices=tuple(SCHEDULERS),
        optional=True,
        per_edit=False,
        page="scheduler",
    ),
    Setting(
        "max_pixels",
        "refuse an input image of more pixels than this, read from its file's header before it is decoded",
        int,
        50_000_000,
        (),
        flag="--max-pixels",
        bounds=">= 1",
        per_edit=False,
    ),
    Setting(
        "fast",
        "the faster preset, --guidance-end 0.7 unless that is given (its quality cost: docs/benchmarks.md)",
        bool,
        False,
        PIXEL,
        flag="--fast",
        per_edit=False,
        call=False,
    ),
)
BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
BY_ARGUMENT: dict[str, Setting] = {setting.argument_for(kind): setting for setting in SETTINGS for kind in KINDS}
BY_CHECKPOINT: dict[str, Setting] = {s.checkpoint: s for s in SETTINGS if s.checkpoint} | {
    "scribble_strength": BY_NAME["strength"]
}
"""The checkpoint's defaults (``model_index.json`` entries) and the settings they are values of."""


def _defaults_class(kind: str) -> type:
    """A frozen dataclass of a ``kind`` pipeline's defaults, by argument name (``DEFAULTS.num_inference_steps``)."""
    taken = [s for s in SETTINGS if kind in s.pipelines and s.call]
    return make_dataclass(
        f"{kind.title()}Defaults",
        [(s.argument_for(kind), Any, field(default=s.default_for(kind))) for s in taken],
        frozen=True,
    )


def _named_here(cls: type) -> type:
    """A class made by ``make_dataclass``, named as this module's (so that it pickles across processes)."""
    cls.__module__ = __name__
    return cls


DEFAULTS = _defaults_class("pixel")()
"""``BlendedDiffusionPipeline``'s defaults (where the checkpoint names none)."""
LATENT_DEFAULTS = _defaults_class("latent")()
"""``BlendedLatentDiffusionPipeline``'s defaults (where the checkpoint names none)."""
EditSettings = _named_here(
    make_dataclass(
        "EditSettings",
        [(s.name, Any, field(default=None)) for s in SETTINGS if s.flag],
        frozen=True,
        namespace={
            "__doc__": "The settings an edit asks for; None: not asked (the pipeline's or checkpoint's default)."
        },
    )
)

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


def results_made(settings: Mapping[str, Any]) -> int:
    """Results a call makes per edit: ``candidates_per_result`` for each of the ``num_images_per_prompt`` returned."""
    return settings["num_images_per_prompt"] * settings["candidates_per_result"]


def steps_run(num_inference_steps: int, strength: float) -> int:
    """How many of the schedule's steps a call runs: the last ``int(num_inference_steps * strength)``."""
    return int(num_inference_steps * strength)


def check_prompt(prompt: Any, name: str = "prompt") -> None:
    """A prompt is a non-empty string."""
    if not isinstance(prompt, str):
        raise TypeError(f"{name} must be a string or a list of strings, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError(f"{name} is empty: describe what the masked region should show")


def check_settings(names: Mapping[str, str] | None = None, **settings: Any) -> None:
    """Check the settings given, by their pipeline argument (or table) names; ``names`` renames them in messages."""
    names = names or {}
    for key, value in settings.items():
        if key == "prompt":
            check_prompt(value, names.get(key, key))
        elif key in BY_ARGUMENT:
            BY_ARGUMENT[key].check(value, names.get(key, key))
    strength, steps = settings.get("strength"), settings.get("num_inference_steps")
    if strength is not None and isinstance(steps, int) and steps_run(steps, strength) < 1:
        name, steps_name = names.get("strength", "strength"), names.get("num_inference_steps", "num_inference_steps")
        raise ValueError(f"{name} {strength} of {steps_name} {steps} runs no step; raise either")


def resolve_settings(kind: str, config: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting a ``kind`` pipeline takes, by argument name: what was ``given`` (not None), else the
    checkpoint's own default (``config``), else the table's."""
    resolved = {}
    for setting in SETTINGS:
        if kind not in setting.pipelines or not setting.call:
            continue
        argument = setting.argument_for(kind)
        value = given.get(argument)
        if value is None and setting.checkpoint is not None:
            value = config.get(setting.checkpoint)
        resolved[argument] = setting.default_for(kind) if value is None else value
    return resolved


def idle_rankings(can_rank: bool, output_type: str, sampler_draws_noise: bool = True) -> tuple[str, ...]:
    """The ranking roles (``Setting.ranks``) that cannot act in a call: all of them without anything to rank with
    (CLIP parts); "results" where latents are returned, unranked; "run" where the sampler draws no noise, so that
    a restart's copies of the best would stay near-copies (``restart.draws_noise``)."""
    if not can_rank:
        return get_args(RankingRole)
    return (("results",) if output_type == "latent" else ()) + (() if sampler_draws_noise else ("run",))


def idle_ranking_defaults(
    kind: str, resolved: dict[str, Any], given: Mapping[str, Any], idle: tuple[str, ...]
) -> dict[str, Any]:
    """``resolved`` (``resolve_settings``'s) with each setting whose ranking role is ``idle`` and that was not
    ``given`` at the table's default, so that a checkpoint's default does not make a plain call fail. One asked for
    is kept, for the pipeline to refuse (``idle_rankings_asked``)."""
    return {
        name: BY_ARGUMENT[name].default_for(kind)
        if BY_ARGUMENT[name].ranks in idle and given.get(name) is None
        else value
        for name, value in resolved.items()
    }


def idle_rankings_asked(kind: str, settings: Mapping[str, Any], idle: tuple[str, ...]) -> list[Setting]:
    """The settings of a call whose ranking role is ``idle`` and that ask for something all the same."""
    named = {s.argument_for(kind): s for s in SETTINGS if s.ranks in idle}
    return [s for name, s in named.items() if name in settings and s.asks_for(settings[name], kind)]


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
