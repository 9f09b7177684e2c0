"""Measure the paper's applications and the crop path for large images on the shipped shapes model.

    python benchmarks/applications.py --out docs/figures/applications     # the published figures
    python benchmarks/applications.py --smoke --out /tmp/smoke             # seconds; what the tests run

Every edit runs at the CLI's defaults (background replacement and scribbles at their own default strengths) and
is judged from pixels:
- background replacement: share of edits whose new background is at least 60% the asked colour (top-1 of 4);
  the object's pixels exact;
- scribble: a rough blob of the asked colour (not one of the shapes) scribbled in, no mask (the strokes' area,
  dilated); the judge's verdict on "a {colour} {shape}" for the top-1 result;
- extrapolation: a scene with a strip of 8 pixels cut off one side, grown back; original pixels exact, the
  seam's strength against the image's own edges, and agreement with what the strip really held, for each way of
  filling the new area before noising (edge, mirror, noise);
- large image: the edit set upscaled 4x (nearest) and edited through the crop path, against native size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import numpy as np
import PIL.Image

from benchmarks.common import heading, load_for_edits, provenance, timed_edit, upscale, write_results
from blended_pipeline import SHAPES_CHECKPOINT, BlendedDiffusionPipeline
from blended_pipeline.applications import (
    BACKGROUND_STRENGTH,
    CANVAS_FILLS,
    apply_scribble,
    extend_canvas,
)
from blended_pipeline.shapes.edits import EDIT_SETS, background_case, edit_cases, extend_case, scribble_case
from blended_pipeline.shapes.judge import colour_labels, judge
from blended_pipeline.shapes.world import COLOURS

EXTEND_CUT = 8  # pixels removed from one side of a 32x32 scene and grown back
LARGE_SCALE = 4
EDGE_STEP = 30.0  # a colour step (0-255) above this between neighbours is an edge; palette colours differ by more


def background_replacement(pipe: BlendedDiffusionPipeline, count: int, settings: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    colour_share, exact = [], []
    for index in range(count):
        case = background_case(rng, 32)
        results = timed_edit(
            pipe, case.image, ~case.keep, case.prompt, index, **{**settings, "strength": BACKGROUND_STRENGTH}
        ).results
        asked = colour_labels(results[0])[~case.keep] == COLOURS.index(case.colour)
        colour_share.append(float(asked.mean()))
        exact.append(all(np.array_equal(r[case.keep], case.image[case.keep]) for r in results))
    return {
        "edits": count,
        "success": float(np.mean(np.array(colour_share) >= 0.6)),
        "mean_asked_colour_share": float(np.mean(colour_share)),
        "object_exact": float(np.mean(exact)),
    }


def scribble(pipe: BlendedDiffusionPipeline, count: int, settings: dict, seed: int, strength: float) -> dict:
    rng = np.random.default_rng(seed)
    verdicts, exact = [], []
    for index in range(count):
        case = scribble_case(rng, 32)
        painted, mask = apply_scribble(PIL.Image.fromarray(case.image), PIL.Image.fromarray(case.strokes))
        painted, mask = np.asarray(painted), np.asarray(mask) > 127
        results = timed_edit(pipe, painted, mask, case.prompt, index, **{**settings, "strength": strength}).results
        verdicts.append(judge(results[0], mask, case.prompt).ok)
        exact.append(all(np.array_equal(r[~mask], painted[~mask]) for r in results))
    return {
        "edits": count,
        "strength": strength,
        "top1_success": float(np.mean(verdicts)),
        "outside_exact": float(np.mean(exact)),
    }


def seam_strength(image: np.ndarray, padding: tuple[int, int, int, int]) -> tuple[float, float, float]:
    """The seam's strength, and two yardsticks from the original part of the image, as colour steps.

    A step is the mean absolute RGB difference (0-255) between neighbouring pixels across a line parallel to the
    seam. Returns the mean step across the seam; the mean step across the image's own parallel lines (an
    ordinary line); and the mean step of the image's own edges (steps above ``EDGE_STEP``; ``EDGE_STEP`` itself
    when the image has none).
    """
    left, top, right, bottom = padding
    height, width = image.shape[:2]
    pixels = image.astype(np.float32)
    axis = 1 if left or right else 0
    original = pixels[top : height - bottom, left : width - right]
    steps = np.abs(np.diff(original, axis=axis)).mean(axis=-1)
    if axis == 1:
        before = left - 1 if left else width - right - 1  # the last column before the seam
        across = np.abs(pixels[top : height - bottom, before + 1] - pixels[top : height - bottom, before])
    else:
        before = top - 1 if top else height - bottom - 1
        across = np.abs(pixels[before + 1, left : width - right] - pixels[before, left : width - right])
    edges = steps[steps > EDGE_STEP]
    return float(across.mean()), float(steps.mean()), float(edges.mean()) if edges.size else EDGE_STEP


def extrapolation(pipe: BlendedDiffusionPipeline, count: int, settings: dict, seed: int, fill: str) -> dict:
    rng = np.random.default_rng(seed)
    seams, own, own_edges, true_seams, agreement, exact = [], [], [], [], [], []
    for index in range(count):
        case = extend_case(rng, 32, EXTEND_CUT)
        canvas, mask = extend_canvas(PIL.Image.fromarray(case.image), *case.padding, fill=fill, seed=index)
        new = np.asarray(mask) > 127
        best = timed_edit(pipe, np.asarray(canvas), new, case.prompt, index, **settings).results[0]
        left, top, right, bottom = case.padding
        exact.append(np.array_equal(best[top : 32 - bottom, left : 32 - right], case.image))
        seam, lines, edges = seam_strength(best, case.padding)
        seams.append(seam)
        own.append(lines)
        own_edges.append(edges)
        true_seams.append(seam_strength(case.scene, case.padding)[0])
        agreement.append(float((colour_labels(best)[new] == colour_labels(case.scene)[new]).mean()))
    seams, own, own_edges = np.array(seams), np.array(own), np.array(own_edges)
    return {
        "edits": count,
        "fill": fill,
        "original_exact": float(np.mean(exact)),
        "mean_seam_step": float(seams.mean()),
        "mean_own_line_step": float(own.mean()),
        "mean_own_edge_step": float(own_edges.mean()),
        "seam_no_stronger_than_own_edges": float(np.mean(seams <= own_edges)),
        "mean_true_seam_step": float(np.mean(true_seams)),
        "seam_no_stronger_than_own_lines": float(np.mean(seams <= own)),
        "agreement_with_true_strip": float(np.mean(agreement)),
    }


def large_image(pipe: BlendedDiffusionPipeline, count: int, settings: dict, seed: int) -> dict:
    native, large, exact = [], [], []
    for index, case in enumerate(edit_cases(seed, count, 32)):
        native.append(
            judge(
                timed_edit(pipe, case.image, case.mask, case.prompt, index, **settings).results[0],
                case.mask,
                case.prompt,
            ).ok
        )
        image, mask = upscale(case.image, LARGE_SCALE), upscale(case.mask, LARGE_SCALE)
        results = timed_edit(pipe, image, mask, case.prompt, index, **settings).results
        large.append(judge(results[0], mask, case.prompt).ok)
        exact.append(all(np.array_equal(r[~mask], image[~mask]) for r in results))
    return {
        "edits": count,
        "scale": LARGE_SCALE,
        "native_top1_success": float(np.mean(native)),
        "large_top1_success": float(np.mean(large)),
        "only_native_accepted": int(np.sum(np.array(native) & ~np.array(large))),
        "only_upscaled_accepted": int(np.sum(np.array(large) & ~np.array(native))),
        "large_outside_exact": float(np.mean(exact)),
    }


def background_rows(background: dict) -> list[str]:
    return [
        f"| background replacement ({background['edits']} edits) | new background >= 60% the asked colour (top-1) "
        f"| {background['success']:.0%} | >= 80% |",
        f"| | mean share of the asked colour | {background['mean_asked_colour_share']:.0%} | |",
        f"| | object pixels exact | {background['object_exact']:.0%} | 100% |",
    ]


def scribble_rows(runs: list[dict]) -> list[str]:
    return [
        f"| scribble, strength {run['strength']} ({run['edits']} edits) | judge accepts top-1 | "
        f"{run['top1_success']:.0%} | >= 80% |"
        for run in runs
    ]


def extrapolation_rows(runs: list[dict]) -> list[str]:
    lines = []
    for run in runs:
        lines += [
            f"| extrapolation, {run['fill']} fill ({run['edits']} edits) | original pixels exact | "
            f"{run['original_exact']:.0%} | 100% |",
            f"| | mean step (0-255) across the seam / the image's own edges / its ordinary lines | "
            f"{run['mean_seam_step']:.1f} / {run['mean_own_edge_step']:.1f} / {run['mean_own_line_step']:.1f} "
            f"(true scene at the seam: {run['mean_true_seam_step']:.1f}) | seam <= own edges |",
            f"| | edits whose seam is no stronger than their own edges / than their ordinary lines | "
            f"{run['seam_no_stronger_than_own_edges']:.0%} / {run['seam_no_stronger_than_own_lines']:.0%} | |",
            f"| | new pixels agreeing with what the strip really held | {run['agreement_with_true_strip']:.0%} | |",
        ]
    return lines


def large_rows(large: dict) -> list[str]:
    return [
        f"| large image, {large['scale']}x upscaled ({large['edits']} edits) | judge accepts top-1: native / "
        f"upscaled | {large['native_top1_success']:.0%} / {large['large_top1_success']:.0%} | upscaled = native |",
        f"| | edits only native accepted / only upscaled accepted | {large['only_native_accepted']} / "
        f"{large['only_upscaled_accepted']} | |",
        f"| | pixels outside the mask exact | {large['large_outside_exact']:.0%} | 100% |",
    ]


ROWS = {
    "background": background_rows,
    "scribble": scribble_rows,
    "extrapolation": extrapolation_rows,
    "large": large_rows,
}


def markdown(results: dict) -> str:
    lines = [
        heading(results),
        "",
        "| application | measure | value | target |",
        "| --- | --- | --- | --- |",
    ]
    for part, rows in ROWS.items():
        if part in results:
            lines += rows(results[part])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md)")
    parser.add_argument("--model", default=SHAPES_CHECKPOINT)
    parser.add_argument("--edits", type=int, default=25, help="edits per application and setting")
    parser.add_argument("--scribble-strengths", help="comma-separated (default: the checkpoint's scribble_strength)")
    parser.add_argument("--fills", default=",".join(CANVAS_FILLS), help="comma-separated extrapolation fills")
    parser.add_argument(  # each application draws its own generator from this seed
        "--seed", type=int, default=EDIT_SETS["heldout"], help="the cases' seed (the published figures: 2025)"
    )
    parser.add_argument("--parts", default=",".join(ROWS), help="comma-separated applications to measure")
    parser.add_argument("--smoke", action="store_true", help="one edit of 4 steps each: checks the code")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if unknown := set(parts) - set(ROWS):
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}; expected some of {', '.join(ROWS)}")
    pipe, settings = load_for_edits(args.model, args.smoke)
    if args.smoke:
        args.edits = 1
    count, seed = args.edits, args.seed
    scribble_strengths = (
        [float(s) for s in args.scribble_strengths.split(",")]
        if args.scribble_strengths
        else [pipe.config.scribble_strength]
    )
    measure = {
        "background": lambda: background_replacement(pipe, count, settings, seed),
        "scribble": lambda: [scribble(pipe, count, settings, seed, s) for s in scribble_strengths],
        "extrapolation": lambda: [extrapolation(pipe, count, settings, seed, fill) for fill in args.fills.split(",")],
        "large": lambda: large_image(pipe, count, settings, seed),
    }
    results = {**provenance("applications.py"), "settings": settings, "seed": seed}
    results.update({part: measure[part]() for part in parts})
    write_results(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
