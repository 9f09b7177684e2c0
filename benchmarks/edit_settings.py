"""Sweep the guidance scale and the strength of edits on a checkpoint; writes JSON and a markdown table.

    python benchmarks/edit_settings.py --scales 1000,2000,4000 --strengths 0.75,0.9,1 --out docs/figures/edit_settings
    python benchmarks/edit_settings.py --smoke --out /tmp/smoke     # seconds; what the tests run

Settings are chosen on a tuning edit set (``--edit-seed``, default the tuning set's) that is not the published
one (the judged set, ``shapes.edits.EDIT_SETS``), so that the published success rate is not picked from its own
noise. Every other setting is the CLI's default. Top-1 failures are sorted by the judge's reason: no pixels of the
asked colour in the mask, a blob too small, or a blob of the wrong shape.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

from benchmarks.common import heading, load_for_edits, provenance, write_results
from benchmarks.metrics import edit_success
from blended_pipeline import SHAPES_CHECKPOINT
from blended_pipeline.shapes.edits import EDIT_SETS


def markdown(results: dict) -> str:
    lines = [
        heading(results),
        "",
        f"Edits: `edit_cases({results['edit_seed']}, {results['edits']}, 32)`; other settings the CLI's defaults.",
        "",
        "| guidance scale | strength | top-1 | any sample | top-1 failures: no colour / too small / wrong shape "
        "| seconds per edit |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in results["runs"]:
        failures = " / ".join(str(n) for n in run["top1_failures"].values())
        lines.append(
            f"| {run['clip_guidance_scale']:g} | {run['strength']:g} | {run['top1_success']:.0%} | "
            f"{run['any_sample_success']:.0%} | {failures} | {run['seconds_per_edit']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md)")
    parser.add_argument("--model", default=SHAPES_CHECKPOINT)
    parser.add_argument("--scales", default="1000,2000,4000", help="comma-separated guidance scales")
    parser.add_argument("--strengths", default="0.75,0.9,1", help="comma-separated strengths")
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--edit-seed", type=int, default=EDIT_SETS["tuning"], help="the tuning edit set's seed")
    parser.add_argument("--smoke", action="store_true", help="one edit of 4 steps per setting: checks the code")
    args = parser.parse_args()
    pipe, settings = load_for_edits(args.model, args.smoke)
    if args.smoke:
        args.edits = 1
    results = {**provenance("edit_settings.py"), "settings": settings, "edit_seed": args.edit_seed, "edits": args.edits}
    runs = results["runs"] = []
    for scale, strength in itertools.product(args.scales.split(","), args.strengths.split(",")):
        tried = {**settings, "clip_guidance_scale": float(scale), "strength": float(strength)}
        run = edit_success(pipe, args.edits, {**tried, "backprop_through_unet": True}, args.edit_seed)
        runs.append({"clip_guidance_scale": float(scale), "strength": float(strength), **run})
        write_results(args.out, results, markdown(results))  # after every setting: a stopped sweep keeps its runs


if __name__ == "__main__":
    main()
