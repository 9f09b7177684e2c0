"""Choose the shapes latent checkpoint's settings on a tuning edit set: top-1 and batch precision per setting.

    python benchmarks/latent_settings.py --strengths 0.9,1 --scales 7.5 --edits 32 --out docs/figures/latent_settings
    python benchmarks/latent_settings.py --smoke --out /tmp/latent_settings         # seconds; checks the script

The edits are the tuning set's (``edit_cases(7, n, 32)``), apart from the judged set that ``latent_vs_pixel.py``
reports on (``edit_cases(2024, ...)``); each setting runs the same edits with the same seeds, the rest at the CLI's
defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

from benchmarks.common import heading, load_for_edits, parse_setting, provenance, write_results
from benchmarks.metrics import judged_edit, summary
from blended_pipeline import SHAPES_LATENT_CHECKPOINT
from blended_pipeline.shapes.edits import EDIT_SETS, edit_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="prefix of the .json and .md written")
    parser.add_argument("--model", default=SHAPES_LATENT_CHECKPOINT)
    parser.add_argument("--strengths", default="0.75,0.9,1", help="comma-separated strengths")
    parser.add_argument("--scales", default="7.5", help="comma-separated classifier-free guidance scales")
    parser.add_argument("--steps", default="50", help="comma-separated schedule lengths")
    parser.add_argument("--setting", type=parse_setting, action="append", default=[], help="NAME=VALUE, every row")
    parser.add_argument("--edits", type=int, default=32)
    parser.add_argument("--smoke", action="store_true", help="2 edits, 4 steps, 2 results: checks the script")
    args = parser.parse_args()
    if args.smoke:
        args.edits = 2
    pipe, settings = load_for_edits(args.model, args.smoke)
    defaults = {**settings, **dict(args.setting)}
    cases = edit_cases(EDIT_SETS["tuning"], args.edits, 32)
    rows = []
    grid = [
        {"num_inference_steps": int(steps), "guidance_scale": float(scale), "strength": float(strength)}
        for steps in args.steps.split(",")
        for scale in args.scales.split(",")
        for strength in args.strengths.split(",")
    ]
    for setting in grid:
        settings = {**defaults, **setting}
        per_edit = [judged_edit(pipe, case, index, settings) for index, case in enumerate(cases)]
        rows.append({**setting, **summary(per_edit)})
        print(rows[-1], flush=True)
    results = {
        **provenance("latent_settings.py"),
        "model": args.model,
        "smoke": args.smoke,
        "overrides": dict(args.setting),
        "rows": rows,
    }
    lines = [
        heading(results),
        f"Tuning edits `edit_cases({EDIT_SETS['tuning']}, {args.edits}, 32)`, "
        f"{defaults['num_images_per_prompt']} results each; overrides: {dict(args.setting) or 'none'}.",
        "",
        "| steps | strength | guidance scale | top-1 | batch precision | diversity | s per image |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['num_inference_steps']} | {r['strength']} | {r['guidance_scale']} | {r['top1_success']:.0%} | "
        f"{r['batch_precision']:.0%} | {r['diversity']:.1f} | {r['seconds_per_image']:.2f} |"
        for r in rows
    ]
    write_results(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
