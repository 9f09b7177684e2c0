"""The edit request every front end makes: the command line from its options, the batch runner from a manifest
line, the page from what was painted. One set of application rules, one resolution of the settings, one run.

A request names its inputs (files or images already open), the application and the settings asked for; settings
not asked for take the application's, the checkpoint's or the table's defaults, resolved once by the pipeline,
which reports what it used. No torch at import: requests are checked before the model loads.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PIL.Image

from blended_pipeline.applications import (
    APPLICATIONS,
    BACKGROUND_STRENGTH,
    apply_scribble,
    extend_canvas,
    invert_mask,
)
from blended_pipeline.families import FLOW_MATCHING, GUIDANCE_DISTILLED
from blended_pipeline.settings import (
    BY_NAME,
    FAST_GUIDANCE_END,
    LATENT_ONLY_SCHEDULERS,
    SCHEDULERS,
    SETTINGS,
    EditSettings,
    InputWarning,
    UsageError,
    check_extension,
    check_image_size,
    check_mask_size,
    check_settings,
    scheduler_class,
    steps_run,
)

ImageSource = Path | PIL.Image.Image
CONVERTED_MODES = ("CMYK", "YCbCr", "LAB", "HSV")  # colour spaces read by converting them to RGB: said once
NEEDS = {"edit": ("mask",), "background": ("mask",), "scribble": ("scribble",), "extend": ("extend",)}
REFUSES = {
    "edit": ("scribble", "extend"),
    "background": ("scribble", "extend"),
    "scribble": ("extend",),
    "extend": ("mask", "scribble"),
}
"""What each application needs beside the image and the prompt, and what it cannot use (a scribble may bring its
own mask; extend masks the new canvas itself)."""


@dataclass(frozen=True)
class EditRequest:
    """One edit as asked: inputs, application ("edit", "background", "scribble" or "extend" with its
    LEFT,TOP,RIGHT,BOTTOM pixels) and settings (None: not asked). ``names`` is how the front end calls each input
    and setting in messages (``{"image": "--image", "num_inference_steps": "--steps"}``)."""

    prompt: Any
    image: ImageSource | None
    mask: ImageSource | None = None
    application: str = "edit"
    scribble: ImageSource | None = None
    extend: tuple[int, int, int, int] | None = None
    settings: Any = field(default_factory=EditSettings)
    names: Mapping[str, str] = field(default_factory=dict)

    def name(self, key: str) -> str:
        return self.names.get(key, key)

    def asked(self) -> dict[str, Any]:
        """The settings asked for, by table name."""
        return {key: value for key, value in dataclasses.asdict(self.settings).items() if value is not None}

    def check(self) -> None:
        """Raise ``UsageError`` for a request no pipeline can run: the application's inputs, the prompt, the
        settings' ranges. Files are not opened."""
        if self.application not in APPLICATIONS:
            raise UsageError(f"application {self.application!r}: expected one of {', '.join(APPLICATIONS)}")
        given = {"image": self.image, "mask": self.mask, "scribble": self.scribble, "extend": self.extend}
        missing = [self.name(key) for key in ("image", *NEEDS[self.application]) if given[key] is None]
        if missing:
            raise UsageError(f"application {self.application} needs {' and '.join('a ' + name for name in missing)}")
        refused = [self.name(key) for key in REFUSES[self.application] if given[key] is not None]
        if refused:
            raise UsageError(f"application {self.application} takes no {', '.join(refused)}")
        asked = self.asked()
        try:
            check_settings({key: self.name(key) for key in ("prompt", *asked)}, prompt=self.prompt, **asked)
        except (ValueError, TypeError) as error:
            raise UsageError(str(error)) from error

    def check_for(self, kind: str, model: str, trained_steps: int | None = None, family: str | None = None) -> None:
        """Refuse, before the model loads, what the ``kind`` model at ``model`` cannot run: settings of the other
        kind (they would be ignored), a scheduler it cannot be guided with or that does not fit its ``family``,
        a negative prompt where the family runs no classifier-free guidance, more steps than its scheduler was
        trained with (``trained_steps``, when known)."""
        asked = self.asked()
        other = [self.name(key) for key in asked if BY_NAME[key].pipelines and kind not in BY_NAME[key].pipelines]
        if other:
            owner = "pixel" if kind == "latent" else "latent"
            raise UsageError(f"{', '.join(other)} applies to {owner} models only; {model} is a {kind} model")
        scheduler = asked.get("scheduler")
        if kind == "pixel" and scheduler in LATENT_ONLY_SCHEDULERS:
            raise UsageError(
                f"{self.name('scheduler')} {scheduler} works with latent models only: "
                f"{LATENT_ONLY_SCHEDULERS[scheduler]}; {model} is a pixel model (use ddpm or ddim)"
            )
        if family in FLOW_MATCHING and scheduler:
            raise UsageError(
                f"{self.name('scheduler')} {scheduler} does not fit {model}: a {family} model is flow matching and "
                f"keeps its own scheduler; leave {self.name('scheduler')} out"
            )
        if family in GUIDANCE_DISTILLED and asked.get("negative_prompt"):
            raise UsageError(
                f"{self.name('negative_prompt')} needs classifier-free guidance, which a {family} model ({model}) "
                "does not run; say what the region should show in the prompt"
            )
        if scheduler and asked.get("restart_at"):
            from blended_pipeline.restart import draws_noise  # diffusers and torch: only when both are asked

            eta = asked.get("eta", BY_NAME["eta"].default)
            if not draws_noise(scheduler_class(scheduler)(), eta):
                at = f" at {self.name('eta')} {eta:g}" if scheduler == "ddim" else ""
                raise UsageError(
                    f"{self.name('restart_at')} {asked['restart_at']:g} restarts results from copies of the best, and "
                    f"{self.name('scheduler')} {scheduler}{at} draws no noise, so the copies would stay near-copies; "
                    f"use {self.name('scheduler')} ddpm, or ddim with {self.name('eta')} above 0, or leave "
                    f"{self.name('restart_at')} out"
                )
        steps = asked.get("num_inference_steps")
        if trained_steps is not None and steps is not None and steps > trained_steps:
            raise UsageError(
                f"{self.name('num_inference_steps')} {steps} is more than the {trained_steps} timesteps the "
                f"scheduler of {model} was trained with; use at most that many"
            )

    def inputs(self) -> tuple[PIL.Image.Image, PIL.Image.Image]:
        """``shaped_inputs``, the mask checked as the pipeline will read it (values, size), before the model loads."""
        image, mask = self.shaped_inputs()
        from blended_pipeline.image_io import load_mask  # torch: only once the files are read

        try:
            load_mask(mask, (image.height, image.width))
        except ValueError as error:
            raise UsageError(str(error)) from error
        return image, mask

    def shaped_inputs(self) -> tuple[PIL.Image.Image, PIL.Image.Image]:
        """The image and mask the pipeline edits, after the application has shaped them; every failure names the
        input as the front end does."""
        try:
            image = self._open("image")
            check_image_size(*image.size, self._label("image"))
            mask = self._open("mask") if self.mask is not None else None
            if self.application == "extend":
                check_extension(*image.size, *self.extend, self.name("extend"))
                fill, seed = self.value("extend_fill"), self.value("seed")
                image, mask = extend_canvas(image, *self.extend, fill=fill, seed=seed)
                check_image_size(*image.size, f"{self.name('extend')}'s canvas")
            if self.application == "scribble":
                image, strokes_mask = apply_scribble(image, self._open("scribble"))
                mask = mask or strokes_mask
            if self.application == "background":
                mask = invert_mask(mask)
            check_mask_size(*mask.size, *image.size, self._label("mask"))
        except ValueError as error:
            raise UsageError(str(error)) from error
        return image, mask

    def value(self, name: str) -> Any:
        """A setting that no pipeline resolves (the seed, the canvas fill, the pixel limit): as asked, else the
        table's default."""
        return self.asked().get(name, BY_NAME[name].default)

    def pipeline_arguments(self, kind: str, checkpoint: Any) -> dict[str, Any]:
        """The settings asked for that a ``kind`` pipeline takes, by its argument names, with the application's
        strength and ``fast``'s guidance end where those are not asked; the pipeline fills in the rest."""
        asked = self.asked()
        arguments = {
            BY_NAME[key].argument_for(kind): value
            for key, value in asked.items()
            if kind in BY_NAME[key].pipelines and BY_NAME[key].call
        }
        arguments["strength"] = asked.get("strength", application_strength(self.application, checkpoint))
        if asked.get("fast") and kind == "pixel":
            arguments.setdefault("guidance_end", FAST_GUIDANCE_END)
        return arguments

    def planned_settings(self, pipe: Any) -> dict[str, Any]:
        """The settings ``pipe`` will run this request with (as the pipeline resolves them, once the scheduler asked
        for is swapped in: ``use_scheduler``), to say before it runs;
        refused, naming the settings as the front end does, when no step would run (a strength too small for the
        checkpoint's steps is known only once its config is read)."""
        kind = pipeline_kind(pipe)
        self.use_scheduler(pipe)
        planned = pipe.resolved_settings(self.pipeline_arguments(kind, pipe.config))
        names = {key: self.name(key) for key in ("strength", "num_inference_steps")}
        try:
            check_settings(names, strength=planned["strength"], num_inference_steps=planned["num_inference_steps"])
        except ValueError as error:
            raise UsageError(str(error)) from error
        return planned

    def use_scheduler(self, pipe: Any) -> None:
        """Swap the scheduler asked for (by name) into ``pipe``, where it is not already there: before the settings
        are planned, which depend on it (a restart gives way under a sampler that draws no noise)."""
        scheduler = self.asked().get("scheduler")
        if scheduler and type(pipe.scheduler).__name__ != SCHEDULERS[scheduler]:
            pipe.scheduler = scheduler_class(scheduler).from_config(pipe.scheduler.config)

    def strength_source(self) -> str:
        """Where the strength comes from, in words."""
        if "strength" in self.asked():
            return self.name("strength")
        return {
            "scribble": "the checkpoint's scribble_strength",
            "background": f"{self.name('background')}'s new background",
        }.get(self.application, "the checkpoint's default_strength")

    def _label(self, key: str) -> str:
        source = getattr(self, key)
        return f"{self.name(key)} {source}" if isinstance(source, Path) else self.name(key)

    def _open(self, key: str) -> PIL.Image.Image:
        source = getattr(self, key)
        if isinstance(source, PIL.Image.Image):
            check_pixels(*source.size, self.value("max_pixels"), self.name(key), self.name("max_pixels"))
            return source
        return open_image(source, self.name(key), self.value("max_pixels"), self.name("max_pixels"))


def application_strength(application: str, checkpoint: Any) -> float:
    """The strength an application runs at when none is asked for: the checkpoint's ``scribble_strength`` for
    scribbles (their colours must survive), 1.0 for a new background, else the checkpoint's ``default_strength``."""
    if application == "scribble":
        return checkpoint.scribble_strength
    return BACKGROUND_STRENGTH if application == "background" else checkpoint.default_strength


def open_image(path: Path, name: str, max_pixels: int, limit_name: str = "max_pixels") -> PIL.Image.Image:
    """The image at ``path``, fully read once its header shows at most ``max_pixels``; every failure names the
    input and the file."""
    with image_header(path, name) as image:
        check_pixels(*image.size, max_pixels, f"{name} {path}", limit_name)
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            warnings.warn(f"{name} {path} has {frames} frames; the first is edited", InputWarning, stacklevel=2)
        if image.mode in CONVERTED_MODES:
            warnings.warn(f"{name} {path} is {image.mode}; it is edited as RGB", InputWarning, stacklevel=2)
        try:
            image.load()
            return image.copy()
        except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt files
            raise UsageError(f"{name} {path}: cannot read the image ({error})") from error


def image_header(path: Path, name: str) -> PIL.Image.Image:
    """The image at ``path`` opened, its header read and its pixels not yet decoded (use it as a context)."""
    if path.is_dir():
        raise UsageError(f"{name} {path}: is a directory; give an image file")
    if not path.is_file():
        raise UsageError(f"{name} {path}: no such file")
    try:
        return PIL.Image.open(path)
    except PIL.Image.DecompressionBombError as error:
        raise UsageError(f"{name} {path}: {error}") from error
    except PIL.UnidentifiedImageError as error:
        raise UsageError(f"{name} {path}: not an image PIL can read") from error
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt headers
        raise UsageError(f"{name} {path}: cannot read the image ({error})") from error


def check_pixels(width: int, height: int, max_pixels: int, name: str, limit_name: str) -> None:
    """Refuse an image of more than ``max_pixels`` before it is decoded: its memory, not its file, is the cost."""
    if width * height > max_pixels:
        raise UsageError(
            f"{name} is {width}x{height} ({width * height:,} pixels), more than {limit_name} "
            f"{max_pixels} allows; downscale it or raise {limit_name}"
        )


@dataclass
class EditResult:
    """What a request gave: the image and mask edited (after the application), the results best first, their
    scores (None: not ranked), the settings the pipeline used and its scheduler."""

    request: EditRequest
    image: PIL.Image.Image
    mask: PIL.Image.Image
    images: list[PIL.Image.Image]
    scores: list[float] | None
    settings: dict[str, Any]
    scheduler: str
    kind: str

    @property
    def steps_run(self) -> int:
        return steps_run(self.settings["num_inference_steps"], self.settings["strength"])

    def record(self, model: str, ranking_clip: str | None = None) -> dict[str, Any]:
        """The prompt, seed, scheduler, model and every setting a front end can set, as used: the results' record."""
        taken = [s.argument_for(self.kind) for s in SETTINGS if s.flag and s.call and self.kind in s.pipelines]
        used = {argument: self.settings[argument] for argument in taken}
        record = {
            "prompt": self.request.prompt,
            "seed": self.request.value("seed"),
            "scheduler": self.scheduler,
            "model": model,
        }
        return {**record, **used, **({"ranking_clip": ranking_clip} if ranking_clip else {})}


def run_edit(
    pipe: Any,
    request: EditRequest,
    inputs: tuple[PIL.Image.Image, PIL.Image.Image] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> EditResult:
    """Run ``request`` on a loaded pipeline (``inputs``: its image and mask, if already prepared); ``on_step(done,
    total)`` follows the denoising."""
    import torch

    image, mask = inputs or request.inputs()
    kind, extra = pipeline_kind(pipe), {}
    request.use_scheduler(pipe)
    if on_step is not None:

        def report(pipeline: Any, step: int, timestep: Any, tensors: dict) -> dict:
            on_step(step + 1, pipeline.num_timesteps)
            return {}

        extra = dict(callback_on_step_end=report, callback_on_step_end_tensor_inputs=[])
    out = pipe(
        prompt=request.prompt,
        image=image,
        mask_image=mask,
        generator=torch.Generator().manual_seed(request.value("seed")),
        **request.pipeline_arguments(kind, pipe.config),
        **extra,
    )
    return EditResult(
        request, image, mask, list(out.images), out.scores, out.settings, type(pipe.scheduler).__name__, kind
    )


def pipeline_defaults(pipe: Any) -> dict[str, Any]:
    """What ``pipe`` runs a call with where nothing is asked: the checkpoint's defaults, else the table's."""
    return pipe.resolved_settings({})


def pipeline_kind(pipe: Any) -> str:
    """ "latent" for a pipeline that edits in a VAE's latent space, else "pixel"."""
    return getattr(pipe, "kind", "latent" if hasattr(pipe, "vae") else "pixel")
