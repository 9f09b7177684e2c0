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
import dataclasses
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from blended_pipeline import SHAPES_CHECKPOINT, SHAPES_LATENT_CHECKPOINT
from blended_pipeline.arguments import FLAGS, OneLineParser, add_edit_options, add_model_options, asked_settings
from blended_pipeline.families import kind_of
from blended_pipeline.loading import (
    check_clip_options,
    check_model_directory,
    load_pipeline,
    model_family,
    resolve_device,
    trained_steps,
    warn_about_unknown_words,
)
from blended_pipeline.output import OutputSet
from blended_pipeline.request import EditRequest, run_edit
from blended_pipeline.settings import BY_NAME, InputWarning, UsageError, check_settings, results_made, steps_run

INTERRUPTED = 130  # the shell's status for a command stopped by SIGINT
NAMES = {**FLAGS, "image": "--image", "mask": "--mask", "scribble": "--scribble", "extend": "--extend"}
NAMES |= {"prompt": "--prompt", "background": "--invert-mask"}
"""How messages name the request's inputs and settings: by their options."""


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
    except (ValueError, TypeError, OSError) as error:
        print(f"blended-edit: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    request = edit_request(args)
    request.check()
    check_model_directory(args.model)
    family = model_family(args.model)
    kind = kind_of(family)
    request.check_for(kind, f"--model {args.model}", trained_steps(args.model), family)
    check_clip_options(args.clip, args.ranking_clip)
    with OutputSet.claimed(args.out, args.demo, args.overwrite) as outputs:
        inputs = request.inputs()  # torch from here on
        device = resolve_device(args.device)
        say(args, f"loading {args.model} on {device} ({args.mixed_precision or 'fp32'})")
        settings = request.asked()
        precision = settings.get("mixed_precision", "no")
        pipe = load_pipeline(args.model, device, args.clip, args.ranking_clip, precision)
        pipe.set_progress_bar_config(disable=args.quiet)
        warn_about_unknown_words(pipe, request.prompt, "blended-edit")
        planned = request.planned_settings(pipe)
        steps, strength = planned["num_inference_steps"], planned["strength"]
        run_steps = steps_run(steps, strength)
        returned, made = planned["num_images_per_prompt"], results_made(planned)
        results = f"{returned} results" if made == returned else f"the best {returned} of {made} results"
        say(
            args,
            f"editing to {request.prompt!r}: {run_steps} of {steps} steps, the first {steps - run_steps} skipped at "
            f"strength {strength:g} ({request.strength_source()}); {results}",
        )
        result = run_edit(pipe, request, inputs)
        record = result.record(args.model, args.ranking_clip)
        for path in outputs.write(result.image, result.mask, record, result.images, result.scores):
            print(path)
    return 0


def edit_request(args: argparse.Namespace) -> EditRequest:
    """The request the options make: the demo's own scene, or the files and application given."""
    if args.latent:
        if args.model != SHAPES_CHECKPOINT:
            raise UsageError("--latent picks the shipped shapes latent model; drop --model (or drop --latent)")
        args.model = SHAPES_LATENT_CHECKPOINT
    settings = asked_settings(args)
    if args.demo:
        if args.image or args.mask:
            raise UsageError("--demo makes its own image and mask; drop --image/--mask")
        if args.out.suffix:
            raise UsageError(f"--demo writes a directory of files: --out names that directory, got {args.out}")
        check_settings(NAMES, **dataclasses.asdict(settings))  # the scene is drawn from the seed: check it first
        seed = BY_NAME["seed"].default if settings.seed is None else settings.seed
        image, mask, prompt = demo_inputs(seed)
        return EditRequest(prompt, image, mask, settings=settings, names=NAMES)
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out must be a .png file, got {args.out}")
    chosen = [name for name, given in (("extend", args.extend), ("scribble", args.scribble)) if given]
    chosen += ["background"] * args.invert_mask
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(NAMES[name] for name in chosen)}: choose one application")
    application = chosen[0] if chosen else "edit"
    return EditRequest(
        args.prompt, args.image, args.mask, application, args.scribble, args.extend, settings, names=NAMES
    )


def demo_inputs(seed: int) -> tuple[PIL.Image.Image, PIL.Image.Image, str]:
    """A shapes scene, a box mask, and a prompt whose colour the scene lacks."""
    from blended_pipeline.shapes.edits import edit_case

    case = edit_case(np.random.default_rng(seed), 32)
    return PIL.Image.fromarray(case.image), PIL.Image.fromarray(case.mask.astype(np.uint8) * 255), case.prompt


def say(args: argparse.Namespace, message: str) -> None:
    """What the command is doing, on stderr (stdout holds only the written files); silent with --quiet."""
    if not args.quiet:
        print(f"blended-edit: {message}", file=sys.stderr, flush=True)


def _one_line_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    if issubclass(category, InputWarning):
        print(f"blended-edit: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
