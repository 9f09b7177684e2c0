"""``blended-edit``: edit the masked region of an image to match a prompt.

    blended-edit --image IN.png --mask MASK.png --prompt "a red circle" --out OUT.png
    blended-edit --demo --out DIR
    blended-edit --image IN.png --mask OBJECT.png --invert-mask --prompt "a blue background" --out OUT.png
    blended-edit --image IN.png --scribble STROKES.png --prompt "a red circle" --out OUT.png
    blended-edit --image IN.png --extend 0,0,16,0 --prompt "a green background" --out OUT.png

Writes the best result to OUT.png, every ranked result beside it (OUT-1.png, OUT-2.png, ... with
OUT-scores.json), and OUT-grid.png (input | mask | results), and prints their names. Argument and file errors
print one line and exit with status 2 before the model loads; an earlier run's outputs are replaced only with
--overwrite; outputs are written under temporary names, then renamed; Ctrl-C exits with status 130 and leaves
nothing behind. torch and diffusers are imported only once the arguments and files have been checked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from blended_pipeline import SHAPES_CHECKPOINT, SHAPES_LATENT_CHECKPOINT
from blended_pipeline.applications import (
    BACKGROUND_STRENGTH,
    CANVAS_FILLS,
    application_strength,
    apply_scribble,
    extend_canvas,
    invert_mask,
)
from blended_pipeline.options import (
    BACKGROUND_LOSSES,
    CLIP_VIEWS,
    DEFAULTS,
    FAST_GUIDANCE_END,
    LATENT_DEFAULTS,
    LATENT_MASKS,
    RANK_BY,
    RECONSTRUCTIONS,
    SCHEDULERS,
    InputWarning,
    check_extension,
    check_image_size,
    check_settings,
    scheduler_class,
    steps_run,
)

DTYPES = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
PIPELINE_ARGUMENTS = ("num_inference_steps", "num_images_per_prompt", "mask_blur", "crop_margin", "rank_by", "eta")
"""Arguments of both pipelines that an option sets one to one (the option's ``dest`` is the argument's name)."""
SHARED_ARGUMENTS = ("rank_border_weight",)
"""Options of both pipelines whose default depends on the pipeline; None where not given."""
PIXEL_ARGUMENTS = (
    "num_augmentations",
    "guidance_every",
    "guidance_end",
    "fast",
    "restart_at",
    "clip_view",
    "background_loss_scale",
    "background_loss",
)
"""Options of the pixel pipeline alone (CLIP guidance); None where not given."""
LATENT_ARGUMENTS = ("negative_prompt", "latent_mask", "reconstruction")
"""Options of the latent pipeline alone; None where not given."""
INTERRUPTED = 130  # the shell's status for a command stopped by SIGINT


class UsageError(Exception):
    """A problem with the command's arguments or files: reported in one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block), exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="blended-edit", description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, help="input image")
    parser.add_argument("--mask", type=Path, help="mask image: white = edit, black = keep")
    parser.add_argument("--prompt", help='what the masked region should show, e.g. "a red circle"')
    parser.add_argument("--out", type=Path, required=True, help="output PNG (with --demo: an output directory)")
    parser.add_argument("--demo", action="store_true", help="render a shapes scene and a mask, and edit it")
    parser.add_argument("--latent", action="store_true", help="use the shipped shapes latent model (latent editing)")
    parser.add_argument("--invert-mask", action="store_true", help="edit everything but the mask (new background)")
    parser.add_argument("--scribble", type=Path, help="image of rough coloured strokes (transparent elsewhere)")
    parser.add_argument("--extend", type=pixels, help="LEFT,TOP,RIGHT,BOTTOM pixels of new canvas to fill")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's outputs (the whole set)")
    add_model_options(parser)
    add_edit_options(parser)
    return parser


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options that choose and place the model, and how the run reports (shared with ``blended-edit-batch``)."""
    parser.add_argument("--model", default=SHAPES_CHECKPOINT, help="pipeline directory or hub id (default: shapes)")
    parser.add_argument("--clip", help="separate CLIP checkpoint (directory or hub id) for a DDPM-only --model")
    parser.add_argument(
        "--ranking-clip",
        help="pixel models: a second CLIP (directory or hub id; same image size and vocabulary) that ranks the "
        "results in place of the guiding one, e.g. a larger one",
    )
    parser.add_argument(
        "--scheduler", choices=tuple(SCHEDULERS), help="swap the checkpoint's scheduler (default: keep its own)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or mps (default: cuda when present)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="fp32, or bf16/fp16 autocast")
    parser.add_argument(
        "--no-blend",
        dest="blend",
        action="store_false",
        help="Algorithm 1: no blending during the process, only the final paste (use with --background-loss-scale)",
    )
    parser.add_argument(
        "--background-loss-scale",
        type=float,
        help="pixel models: weight of the loss on changes outside the mask (Algorithm 1's lambda; default 0)",
    )
    parser.add_argument(
        "--background-loss",
        choices=BACKGROUND_LOSSES,
        help="pixel models: lpips, the paper's MSE + LPIPS (its AlexNet weights are downloaded once); mse: offline "
        f"(default {DEFAULTS.background_loss})",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the written files (no progress)")


EDIT_OPTIONS = (
    "--samples",
    "--steps",
    "--strength",
    "--seed",
    "--guidance-scale",
    "--augmentations",
    "--guidance-every",
    "--guidance-end",
    "--clip-view",
    "--mask-blur",
    "--crop-margin",
    "--rank-by",
    "--rank-border-weight",
    "--eta",
    "--extend-fill",
    "--negative-prompt",
    "--latent-mask",
    "--reconstruction",
)
"""The options of one edit that a batch manifest may set per line; ``add_edit_options`` also adds ``--fast``, a
command-line preset (a manifest line sets ``guidance_end`` instead)."""


def add_edit_options(parser: argparse.ArgumentParser) -> None:
    """The options of one edit, ``EDIT_OPTIONS`` and ``--fast`` (shared with ``blended-edit-batch``, where they are
    defaults)."""
    parser.add_argument(
        "--samples",
        dest="num_images_per_prompt",
        type=int,
        default=DEFAULTS.num_images_per_prompt,
        help=f"results to generate and rank (default {DEFAULTS.num_images_per_prompt})",
    )
    parser.add_argument(
        "--steps",
        dest="num_inference_steps",
        type=int,
        help="steps of the full schedule (default: a pixel checkpoint's default_num_inference_steps, "
        f"{DEFAULTS.num_inference_steps} if it names none; {LATENT_DEFAULTS.num_inference_steps} for a latent model)",
    )
    parser.add_argument(
        "--strength",
        type=float,
        default=None,
        help="fraction of the schedule run (default: the checkpoint's default_strength, or its scribble_strength "
        f"with --scribble, both in its model_index.json; {BACKGROUND_STRENGTH} with --invert-mask)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--guidance-scale",
        type=float,
        help=f"guidance weight: CLIP guidance for a pixel model (default {DEFAULTS.clip_guidance_scale:g}), "
        f"classifier-free for a latent one (default {LATENT_DEFAULTS.guidance_scale:g})",
    )
    parser.add_argument(
        "--augmentations",
        dest="num_augmentations",
        type=int,
        help=f"pixel models: augmented views per result (default {DEFAULTS.num_augmentations}; 16 picks the right "
        "result more often on small, wide and round masks, at about 1.4x the time: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--guidance-every",
        dest="guidance_every",
        type=int,
        help="pixel models: guide every k-th step only, the others one UNet forward pass (faster; default "
        f"{DEFAULTS.guidance_every}, every step)",
    )
    parser.add_argument(
        "--guidance-end",
        dest="guidance_end",
        type=float,
        help="pixel models: guide the first fraction of the steps run, the rest one UNet forward pass each "
        f"(faster; default {DEFAULTS.guidance_end:g}, every step)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        default=None,
        help=f"pixel models: the faster preset, --guidance-end {FAST_GUIDANCE_END:g} unless that is given "
        "(its quality cost: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--restart-at",
        dest="restart_at",
        type=float,
        help="pixel models: at this fraction of the run, the results restart from copies of the best so far (0: "
        "never; default: the checkpoint's default_restart_at)",
    )
    parser.add_argument(
        "--clip-view",
        choices=CLIP_VIEWS,
        help="pixel models: what CLIP sees, the masked image or the square around the mask enlarged (default "
        f"{DEFAULTS.clip_view})",
    )
    parser.add_argument(
        "--mask-blur", type=float, default=DEFAULTS.mask_blur, help="feather the mask by this many pixels"
    )
    parser.add_argument(
        "--crop-margin", type=float, default=DEFAULTS.crop_margin, help="context around the mask for large images"
    )
    parser.add_argument(
        "--rank-by",
        choices=RANK_BY,
        default=DEFAULTS.rank_by,
        help=f"score the masked region, the whole image, or both (default {DEFAULTS.rank_by})",
    )
    parser.add_argument(
        "--rank-border-weight",
        type=float,
        help="rank results down by this times the colour step across the mask's edge (default: a pixel "
        "checkpoint's default_rank_border_weight; 0 for latent models, whose ranking needs --clip)",
    )
    parser.add_argument(
        "--eta", type=float, default=DEFAULTS.eta, help=f"DDIM's stochasticity, 0 to 1 (default {DEFAULTS.eta:g})"
    )
    parser.add_argument(
        "--extend-fill", choices=CANVAS_FILLS, default="edge", help="what --extend's new canvas starts as"
    )
    parser.add_argument("--negative-prompt", help="latent models: what the region should not show")
    parser.add_argument(
        "--latent-mask",
        choices=LATENT_MASKS,
        help="latent models: conservative (any masked pixel edits its latent cell; default) or nearest (BLD's)",
    )
    parser.add_argument(
        "--reconstruction",
        choices=RECONSTRUCTIONS,
        help="latent models: paste (default) or decoder (fit a copy of the decoder to the background first)",
    )


def pixels(text: str) -> tuple[int, int, int, int]:
    values = text.split(",")
    if len(values) != 4 or not all(v.strip().isdigit() for v in values):
        raise argparse.ArgumentTypeError(f"expected LEFT,TOP,RIGHT,BOTTOM as four non-negative integers, got {text!r}")
    return tuple(int(v) for v in values)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return run(args)
    except KeyboardInterrupt:
        print("blended-edit: interrupted; nothing was written", file=sys.stderr)
        return INTERRUPTED
    except (UsageError, ValueError, TypeError, OSError) as error:
        print(f"blended-edit: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    outputs = OutputSet.planned(args)
    image, mask, prompt = demo_inputs(args.seed) if args.demo else prepare_inputs(args)
    from blended_pipeline.image_io import load_image, load_mask

    load_mask(mask, load_image(image).shape[-2:])  # a bad mask is refused before the model loads
    device = resolve_device(args.device)
    check_model_directory(args.model)
    check_options_for(args, model_kind(args.model), flag_names(build_parser()))
    check_clip_options(args, model_kind(args.model))
    say(args, f"loading {args.model} on {device} ({args.dtype})")
    pipe = load_pipeline(args.model, args.clip, args.scheduler, device, args.ranking_clip)
    pipe.set_progress_bar_config(disable=args.quiet)
    warn_about_unknown_words(pipe, prompt)
    settings = pipeline_settings(args, pipe)
    steps, strength = settings["num_inference_steps"], settings["strength"]
    run_steps = steps_run(steps, strength)
    say(
        args,
        f"editing to {prompt!r}: {run_steps} of {steps} steps, the first {steps - run_steps} skipped at strength "
        f"{strength:g} ({strength_source(args)}); {settings['num_images_per_prompt']} results",
    )
    import torch

    out = pipe(
        prompt=prompt, image=image, mask_image=mask, generator=torch.Generator().manual_seed(args.seed), **settings
    )
    scheduler = type(pipe.scheduler).__name__
    record = {"prompt": prompt, "seed": args.seed, "scheduler": scheduler, "model": args.model, **settings}
    if args.ranking_clip:
        record["ranking_clip"] = args.ranking_clip
    for path in outputs.write(image, mask, record, out.images, out.scores):
        print(path)
    return 0


def say(args: argparse.Namespace, message: str) -> None:
    """What the command is doing, on stderr (stdout holds only the written files); silent with --quiet."""
    if not args.quiet:
        print(f"blended-edit: {message}", file=sys.stderr, flush=True)


def _one_line_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    if issubclass(category, InputWarning):
        print(f"blended-edit: warning: {message}", file=sys.stderr)


def pipeline_settings(args: argparse.Namespace, pipe: Any) -> dict:
    """The keyword arguments of ``pipe``'s call that the options set (all but the inputs), each option not given
    taking the pipeline's default and ``strength`` the checkpoint's."""
    settings = {name: getattr(args, name) for name in PIPELINE_ARGUMENTS}
    settings["rank_border_weight"] = _given(
        args.rank_border_weight, pipe.config.get("default_rank_border_weight", DEFAULTS.rank_border_weight)
    )
    if is_latent(pipe):
        settings.update(
            num_inference_steps=_given(args.num_inference_steps, default_steps(pipe)),
            guidance_scale=_given(args.guidance_scale, LATENT_DEFAULTS.guidance_scale),
            negative_prompt=args.negative_prompt,
            latent_mask=_given(args.latent_mask, LATENT_DEFAULTS.latent_mask),
            reconstruction=_given(args.reconstruction, LATENT_DEFAULTS.reconstruction),
        )
    else:
        settings.update(
            num_inference_steps=_given(args.num_inference_steps, default_steps(pipe)),
            clip_guidance_scale=_given(args.guidance_scale, DEFAULTS.clip_guidance_scale),
            num_augmentations=_given(args.num_augmentations, DEFAULTS.num_augmentations),
            guidance_every=_given(args.guidance_every, DEFAULTS.guidance_every),
            guidance_end=_given(args.guidance_end, FAST_GUIDANCE_END if args.fast else DEFAULTS.guidance_end),
            restart_at=_given(args.restart_at, pipe.config.get("default_restart_at", DEFAULTS.restart_at)),
            clip_view=_given(args.clip_view, DEFAULTS.clip_view),
            background_loss_scale=_given(args.background_loss_scale, DEFAULTS.background_loss_scale),
            background_loss=_given(args.background_loss, DEFAULTS.background_loss),
        )
    return dict(
        **settings,
        strength=strength_for(args, pipe.config),
        blend=args.blend,
        mixed_precision=DTYPES[args.dtype],
    )


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def default_steps(pipe: Any) -> int:
    """The steps of a call that names none: a pixel checkpoint's own ``default_num_inference_steps``, a latent
    model's Blended Latent Diffusion default."""
    if is_latent(pipe):
        return LATENT_DEFAULTS.num_inference_steps
    return pipe.config.get("default_num_inference_steps", DEFAULTS.num_inference_steps)


def is_latent(pipe: Any) -> bool:
    """Whether ``pipe`` edits in a latent space (``BlendedLatentDiffusionPipeline``)."""
    return hasattr(pipe, "vae")


def model_kind(model: str) -> str:
    """ "latent" for a latent diffusion checkpoint (Stable Diffusion format: a vae and a text encoder), else
    "pixel"; read from the directory's (or the hub repository's) model_index.json before anything loads."""
    path = Path(model) / "model_index.json"
    if path.is_file():
        index = json.loads(path.read_text())
    else:
        from diffusers import DiffusionPipeline

        try:
            index = DiffusionPipeline.load_config(model)
        except (OSError, ValueError) as error:
            raise UsageError(
                f"--model {model}: cannot read its model_index.json ({str(error).splitlines()[0]})"
            ) from error
    latent = index.get("_class_name") == "BlendedLatentDiffusionPipeline" or "text_encoder" in index
    return "latent" if latent else "pixel"


def check_options_for(args: argparse.Namespace, kind: str, names: dict[str, str]) -> None:
    """Refuse options of the other kind of pipeline: they would be ignored."""
    other = PIXEL_ARGUMENTS if kind == "latent" else LATENT_ARGUMENTS
    given = [names.get(name, name) for name in other if getattr(args, name, None) is not None]
    if given:
        owner = "pixel" if kind == "latent" else "latent"
        raise UsageError(f"{', '.join(given)} applies to {owner} models only; --model {args.model} is a {kind} model")


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each pipeline argument's option, to name it in messages: ``num_inference_steps`` -> ``--steps``."""
    return {action.dest: action.option_strings[0] for action in parser._actions if action.option_strings}


def strength_for(args: argparse.Namespace, checkpoint: Any) -> float:
    """The strength asked for, else the application's (``applications.application_strength``)."""
    if args.strength is not None:
        return args.strength
    application = "scribble" if args.scribble else "background" if args.invert_mask else "edit"
    return application_strength(application, checkpoint)


def strength_source(args: argparse.Namespace) -> str:
    """Where ``strength_for`` took the strength from, in words."""
    if args.strength is not None:
        return "--strength"
    if args.scribble:
        return "the checkpoint's scribble_strength"
    return "--invert-mask's new background" if args.invert_mask else "the checkpoint's default_strength"


def prepare_inputs(args: argparse.Namespace) -> tuple[PIL.Image.Image, PIL.Image.Image, str]:
    """The image and mask the pipeline edits, after the application options have shaped them."""
    image = open_image(args.image, "--image")
    check_image_size(*image.size, f"--image {args.image}")
    mask = open_image(args.mask, "--mask") if args.mask else None
    if args.extend:
        check_extension(*image.size, *args.extend, "--extend")
        image, mask = extend_canvas(image, *args.extend, fill=args.extend_fill, seed=args.seed)
        check_image_size(*image.size, "--extend's canvas")
    if args.scribble:
        image, stroke_mask = apply_scribble(image, open_image(args.scribble, "--scribble"))
        mask = mask or stroke_mask
    if args.invert_mask:
        mask = invert_mask(mask)
    return image, mask, args.prompt


def check_arguments(args: argparse.Namespace) -> None:
    if args.latent:
        if args.model != SHAPES_CHECKPOINT:
            raise UsageError("--latent picks the shipped shapes latent model; drop --model (or drop --latent)")
        args.model = SHAPES_LATENT_CHECKPOINT
    if args.demo:
        if args.image or args.mask:
            raise UsageError("--demo makes its own image and mask; drop --image/--mask")
        if args.out.suffix:
            raise UsageError(f"--demo writes a directory of files: --out names that directory, got {args.out}")
    else:
        needs_mask = not (args.extend or args.scribble)
        required = (("--image", args.image), ("--mask", args.mask if needs_mask else True), ("--prompt", args.prompt))
        missing = [flag for flag, value in required if value is None]
        if missing:
            raise UsageError(f"missing {', '.join(missing)} (or use --demo)")
        if args.extend and args.mask:
            raise UsageError("--extend masks the new canvas area itself; drop --mask")
        if args.out.suffix.lower() != ".png":
            raise UsageError(f"--out must be a .png file, got {args.out}")
    try:
        check_settings(flag_names(build_parser()), **checked_settings(args))
    except ValueError as error:
        raise UsageError(str(error)) from error


def checked_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given in ``args`` that ``options.check_settings`` checks, by their pipeline names."""
    names = (
        *PIPELINE_ARGUMENTS,
        *SHARED_ARGUMENTS,
        *PIXEL_ARGUMENTS,
        *LATENT_ARGUMENTS,
        "guidance_scale",
        "strength",
        "scheduler",
    )
    settings = {name: getattr(args, name, None) for name in names}
    return {"prompt": args.prompt, **{name: value for name, value in settings.items() if value is not None}}


def open_image(path: Path, flag: str) -> PIL.Image.Image:
    """The image at ``path``, fully read; every failure names the flag and the file."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; give an image file")
    if not path.is_file():
        raise UsageError(f"{flag} {path}: no such file")
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return image.copy()
    except PIL.UnidentifiedImageError as error:
        raise UsageError(f"{flag} {path}: not an image PIL can read") from error
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt files
        raise UsageError(f"{flag} {path}: cannot read the image ({error})") from error


def demo_inputs(seed: int) -> tuple[PIL.Image.Image, PIL.Image.Image, str]:
    """A shapes scene, a box mask, and a prompt whose colour the scene lacks."""
    from blended_pipeline.shapes.edits import edit_case

    case = edit_case(np.random.default_rng(seed), 32)
    return PIL.Image.fromarray(case.image), PIL.Image.fromarray(case.mask.astype(np.uint8) * 255), case.prompt


def resolve_device(text: str) -> str:
    """``--device`` as a torch device string that is present here; "auto" is cuda when present, else cpu."""
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"--device {text}: not a device torch knows; use cpu, cuda, cuda:N or mps") from error
    present = {
        "cpu": True,
        "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
        "mps": torch.backends.mps.is_available(),
    }
    if not present.get(device.type, False):
        raise UsageError(f"--device {text}: no such device here; use cpu" + (" or cuda" * torch.cuda.is_available()))
    return str(device)


def check_model_directory(model: str, flag: str = "--model", needs: str = "model_index.json") -> None:
    """A local checkpoint directory has the file that describes it and, for a pipeline, every component folder
    its model_index.json names; anything else that looks like a path must exist. Hub ids pass (read at load)."""
    path = Path(model)
    if not path.exists():
        if path.is_absolute() or model.startswith(".") or model.count("/") > 1:
            raise UsageError(f"{flag} {model}: no such directory (and not a hub id, which reads owner/name)")
        return
    if not (path / needs).is_file():
        raise UsageError(f"{flag} {model}: no {needs} there; give a diffusers/transformers checkpoint directory")
    if needs == "model_index.json":
        for name, entry in json.loads((path / needs).read_text()).items():
            if isinstance(entry, list) and entry[0] is not None and not (path / name).is_dir():
                raise UsageError(f"{flag} {model}: model_index.json names {name!r} but {path / name} is missing")


def check_clip_options(args: argparse.Namespace, kind: str) -> None:
    """Refuse a ``--clip`` or ``--ranking-clip`` that is not a CLIP checkpoint, and a ranking CLIP for a latent
    model (its ranking scores with the guiding CLIP alone)."""
    if args.clip:
        check_model_directory(args.clip, "--clip", "config.json")
    if args.ranking_clip:
        if kind == "latent":
            raise UsageError(f"--ranking-clip applies to pixel models only; --model {args.model} is a latent model")
        check_model_directory(args.ranking_clip, "--ranking-clip", "config.json")


def load_pipeline(
    model: str, clip: str | None, scheduler: str | None, device: str, ranking_clip: str | None = None
) -> Any:
    """The pipeline of ``model``'s kind (pixel or latent), with a separate CLIP's parts, a ranking CLIP and a
    scheduler by name when given, on ``device``."""
    import diffusers
    import transformers
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from blended_pipeline.pipeline import BlendedDiffusionPipeline
    from blended_pipeline.pipeline_latent import BlendedLatentDiffusionPipeline

    diffusers.utils.logging.disable_progress_bar()  # the denoising bar stays; loading bars are noise
    transformers.utils.logging.disable_progress_bar()
    latent = model_kind(model) == "latent"
    clip_parts = {}
    if clip:
        try:
            clip_parts = {
                "clip_model": CLIPModel.from_pretrained(clip),
                "clip_tokenizer" if latent else "tokenizer": CLIPTokenizer.from_pretrained(clip),
                "feature_extractor": CLIPImageProcessor.from_pretrained(clip),
            }
        except (OSError, ValueError) as error:
            raise UsageError(f"--clip {clip}: cannot load a CLIP ({str(error).splitlines()[0]})") from error
    pipeline_class = BlendedLatentDiffusionPipeline if latent else BlendedDiffusionPipeline
    try:
        pipe = pipeline_class.from_pretrained(model, **clip_parts)
    except (OSError, ValueError, TypeError) as error:
        raise UsageError(f"--model {model}: cannot load a pipeline ({str(error).splitlines()[0]})") from error
    if ranking_clip:
        pipe.register_modules(ranking_clip_model=load_ranking_clip(ranking_clip, pipe.clip_model))
    if scheduler:
        pipe.scheduler = scheduler_class(scheduler).from_config(pipe.scheduler.config)
    return pipe.to(device)


def load_ranking_clip(ranking_clip: str, clip_model: Any) -> Any:
    """The CLIP at ``ranking_clip``, refused when it cannot read what the guiding CLIP's preprocessing makes."""
    from transformers import CLIPModel

    from blended_pipeline.pipeline import check_ranking_clip

    try:
        ranking_clip_model = CLIPModel.from_pretrained(ranking_clip)
        check_ranking_clip(ranking_clip_model, clip_model)
    except (OSError, ValueError) as error:
        raise UsageError(f"--ranking-clip {ranking_clip}: {str(error).splitlines()[0]}") from error
    return ranking_clip_model


def warn_about_unknown_words(pipe: Any, prompt: str) -> None:
    """The shapes models know a closed vocabulary: name the words they never saw."""
    from blended_pipeline.shapes.tokenizer import unknown_words
    from blended_pipeline.shapes.world import VOCABULARY

    shapes = {Path(SHAPES_CHECKPOINT).resolve(), Path(SHAPES_LATENT_CHECKPOINT).resolve()}
    if Path(str(pipe.name_or_path)).resolve() in shapes:
        unknown = unknown_words(prompt, VOCABULARY)
        if unknown:
            print(f"blended-edit: warning: the shapes model does not know {', '.join(unknown)}", file=sys.stderr)


class OutputSet:
    """The files one run writes (the best result, its ranked siblings, the grid and the scores; with --demo also
    the input and the mask), checked before any work and written all at once."""

    def __init__(self, best: Path, extras: tuple[str, ...]) -> None:
        self.best, self.extras = best, extras
        self.scores = best.with_name(f"{best.stem}-scores.json")

    @classmethod
    def planned(cls, args: argparse.Namespace) -> OutputSet:
        """Refuse, before any work, an output place that cannot be written or that holds an earlier run's set."""
        folder = args.out if args.demo else args.out.parent
        if args.demo and args.out.exists() and not args.out.is_dir():
            raise UsageError(f"--out {args.out}: exists and is not a directory; --demo writes a directory")
        if not args.demo and not folder.is_dir():
            raise UsageError(f"--out's directory {folder} does not exist")
        _check_writable(next(p for p in (folder, *folder.parents) if p.exists()))  # --demo may create its folder
        outputs = cls(folder / "result.png" if args.demo else args.out, ("input", "mask") * args.demo)
        earlier = outputs.existing()
        if earlier and not args.overwrite:
            names = ", ".join(path.name for path in earlier[:3]) + (", ..." if len(earlier) > 3 else "")
            raise UsageError(
                f"--out {args.out}: {len(earlier)} file(s) of an earlier run are there ({names}); "
                "pass --overwrite to replace the whole set"
            )
        return outputs

    def existing(self) -> list[Path]:
        """Files of this set already on disk, numbered siblings of any count included."""
        folder, stem = self.best.parent, self.best.stem
        if not folder.is_dir():
            return []
        named = [self.best, folder / f"{stem}-grid.png", self.scores]
        named += [folder / f"{extra}.png" for extra in self.extras]
        numbered = [p for p in folder.glob(f"{stem}-*.png") if p.stem[len(stem) + 1 :].isdigit()]
        return sorted({path for path in [*named, *numbered] if path.exists()})

    def write(
        self,
        image: PIL.Image.Image,
        mask: PIL.Image.Image,
        record: dict,
        results: list[PIL.Image.Image],
        scores: list[float],
    ) -> list[Path]:
        """Everything to temporary names first, renamed only when all is written; with --overwrite the earlier
        set's files that this run does not write (more numbered results) are removed. ``record`` (the prompt and
        the settings) goes into the scores file beside the ranking."""
        self.best.parent.mkdir(parents=True, exist_ok=True)
        folder, stem = self.best.parent, self.best.stem
        files: dict[Path, PIL.Image.Image] = {}
        if self.extras:
            files = {folder / "input.png": image.convert("RGB"), folder / "mask.png": mask.convert("L")}
        files[self.best] = results[0]
        for rank, result in enumerate(results, start=1):
            files[folder / f"{stem}-{rank}.png"] = result
        files[folder / f"{stem}-grid.png"] = grid([image, mask, *results])
        ranked = [{"rank": r, "file": f"{stem}-{r}.png", "score": s} for r, s in enumerate(scores, start=1)]
        scores_text = json.dumps({**record, "results": ranked}, indent=2)
        stale = [path for path in self.existing() if path not in files and path != self.scores]
        temporary: list[tuple[str, Path]] = []
        try:
            for path, picture in files.items():
                temporary.append((_temporary_name(path), path))
                picture.save(temporary[-1][0], format="PNG")
            temporary.append((_temporary_name(self.scores), self.scores))
            Path(temporary[-1][0]).write_text(scores_text)
        except BaseException:
            for name, _ in temporary:
                Path(name).unlink(missing_ok=True)
            raise
        permissions = 0o666 & ~current_umask()
        for name, path in temporary:
            os.chmod(name, permissions)
            os.replace(name, path)
        for path in stale:
            path.unlink(missing_ok=True)
        return [path for _, path in temporary]


def _check_writable(folder: Path) -> None:
    """Create and remove a file in ``folder``: the one check a read-only or special filesystem cannot pass."""
    try:
        handle, name = tempfile.mkstemp(prefix=".blended-edit-", dir=folder)
        os.close(handle)
        os.unlink(name)
    except OSError as error:
        raise UsageError(f"--out: cannot write in {folder} ({error.strerror or error})") from error


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set back at once)."""
    current = os.umask(0)
    os.umask(current)
    return current


def grid(pictures: list[PIL.Image.Image], cell: int = 128) -> PIL.Image.Image:
    """Side by side, each scaled (nearest, so small images stay crisp) to ``cell`` pixels high."""
    scaled = [
        p.convert("RGB").resize((max(1, round(cell * p.width / p.height)), cell), PIL.Image.NEAREST) for p in pictures
    ]
    canvas = PIL.Image.new("RGB", (sum(p.width for p in scaled) + 4 * (len(scaled) - 1), cell), (255, 255, 255))
    x = 0
    for picture in scaled:
        canvas.paste(picture, (x, 0))
        x += picture.width + 4
    return canvas


def _temporary_name(path: Path) -> str:
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return name


if __name__ == "__main__":
    sys.exit(main())
