"""The shapes world's pixel pipeline against its latent pipeline, side by side in one run, each at its defaults.

    python benchmarks/latent_vs_pixel.py --out docs/figures/latent_vs_pixel            # 50 edits, 16 for decoders
    python benchmarks/latent_vs_pixel.py --smoke --out /tmp/latent                     # checks the script

On the project's judged edit set (``edit_cases(2024, n, 32)``), edit by edit, the pixel pipeline and the latent
pipeline alternate, each at the CLI's defaults for its checkpoint: top-1 success and batch precision (the pixel
judge on the best result and on every result), seconds per image, the seam step (mean colour step across the
mask's border of the best result) and whether every pixel outside the mask is the input's. Then the latent
pipeline's background reconstruction, "paste" against "decoder", on the first ``--reconstruction-edits`` edits:
the seam step of the pasted result, and the PSNR outside the mask of the decoded image before the paste.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import numpy as np
import PIL.Image
import torch

from benchmarks.common import heading, load_for_edits, provenance, timed_edit, tiny_settings, write_results
from benchmarks.metrics import border_step, judged_edit, psnr_outside, summary, to_uint8
from blended_pipeline import SHAPES_CHECKPOINT, SHAPES_LATENT_CHECKPOINT, BlendedLatentDiffusionPipeline
from blended_pipeline.reconstruction import fit_decoder
from blended_pipeline.shapes.edits import EDIT_SETS, edit_cases

MODELS = {"pixel": SHAPES_CHECKPOINT, "latent": SHAPES_LATENT_CHECKPOINT}


def decoded_backgrounds(pipe: BlendedLatentDiffusionPipeline, case, seed: int, settings: dict) -> dict:
    """The final latents of one edit, decoded plainly and by a fitted decoder: PSNR outside the mask before the
    paste; and the seam step of each reconstruction's pasted best result."""
    final = {}

    def keep_latents(pipeline, step, timestep, tensors):
        final.update(tensors)
        return {}

    image, mask = PIL.Image.fromarray(case.image), PIL.Image.fromarray(case.mask.astype(np.uint8) * 255)
    row = {}
    for reconstruction in ("paste", "decoder"):
        options = {**settings, "reconstruction": reconstruction}
        out = pipe(
            case.prompt,
            image,
            mask,
            generator=torch.Generator().manual_seed(seed),
            callback_on_step_end=keep_latents,
            callback_on_step_end_tensor_inputs=["latents"],
            **options,
        )
        row[f"seam_step_{reconstruction}"] = border_step(np.asarray(out.images[0]), case.mask)
    latents = final["latents"][:1] / pipe.vae.config.scaling_factor
    source = torch.from_numpy(case.image).permute(2, 0, 1)[None].float() / 127.5 - 1
    region = torch.from_numpy(case.mask)[None, None].float()
    with torch.no_grad():
        plain = pipe.vae.decode(latents).sample
    fitted = fit_decoder(pipe.vae, latents, source, region).image
    row["psnr_outside_paste"] = psnr_outside(to_uint8(plain)[0], case.image, case.mask)
    row["psnr_outside_decoder"] = psnr_outside(to_uint8(fitted)[0], case.image, case.mask)
    return row


def run(args: argparse.Namespace) -> dict:
    loaded = {name: load_for_edits(model, args.smoke) for name, model in MODELS.items()}
    pipes = {name: pipe for name, (pipe, _) in loaded.items()}
    settings = {name: pipe_settings for name, (_, pipe_settings) in loaded.items()}
    cases = edit_cases(EDIT_SETS["judged"], args.edits, 32)
    for name, pipe in pipes.items():  # warm-up: one-time initialisation is not part of an edit's cost
        timed_edit(pipe, cases[0].image, cases[0].mask, cases[0].prompt, 0, **tiny_settings(settings[name]))
    per_edit: dict[str, list[dict]] = {name: [] for name in pipes}
    reconstructions = []
    began = time.perf_counter()
    for index, case in enumerate(cases):
        for name in ("pixel", "latent") if index % 2 == 0 else ("latent", "pixel"):  # alternate who goes first
            per_edit[name].append(judged_edit(pipes[name], case, index, settings[name]))
        if index < args.reconstruction_edits:
            reconstructions.append(decoded_backgrounds(pipes["latent"], case, index, settings["latent"]))
        print(f"edit {index + 1}/{args.edits}: {time.perf_counter() - began:.0f} s", flush=True)
    results = {name: summary(rows) for name, rows in per_edit.items()}
    return {
        **provenance("latent_vs_pixel.py"),
        "smoke": args.smoke,
        "settings": {name: {k: v for k, v in s.items() if k != "mixed_precision"} for name, s in settings.items()},
        **results,
        "latent_speedup_per_image": results["pixel"]["seconds_per_image"] / results["latent"]["seconds_per_image"],
        "reconstruction": {
            "edits": len(reconstructions),
            **{key: float(np.mean([r[key] for r in reconstructions])) for key in (reconstructions or [{}])[0]},
        },
    }


def markdown(results: dict) -> str:
    lines = [
        heading(results),
        "",
        f"Judged edit set `edit_cases({EDIT_SETS['judged']}, {results['pixel']['edits']}, 32)`, each pipeline at the "
        "CLI's defaults for its shipped checkpoint, alternating edit by edit.",
        "",
        "| pipeline | top-1 | batch precision | diversity | s / image | seam step | background exact |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("pixel", "latent"):
        row = results[name]
        lines.append(
            f"| {name} | {row['top1_success']:.0%} | {row['batch_precision']:.0%} | {row['diversity']:.1f} | "
            f"{row['seconds_per_image']:.2f} | "
            f"{row['seam_step']:.1f} | {row['background_exact']:.0%} |"
        )
    rec = results["reconstruction"]
    lines += ["", f"Latent over pixel, seconds per image: {results['latent_speedup_per_image']:.1f}x faster.", ""]
    if not rec["edits"]:
        return "\n".join(lines)
    lines += [
        f"Latent background reconstruction ({rec['edits']} edits): seam step of the pasted best result "
        f"{rec['seam_step_paste']:.1f} (paste) vs {rec['seam_step_decoder']:.1f} (decoder); PSNR outside the mask of "
        f"the decoded image before the paste {rec['psnr_outside_paste']:.1f} dB (paste) vs "
        f"{rec['psnr_outside_decoder']:.1f} dB (decoder).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="prefix of the .json and .md written")
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--reconstruction-edits", type=int, default=16)
    parser.add_argument("--smoke", action="store_true", help="2 edits, 4 steps, 2 results, no decoder fitting")
    args = parser.parse_args()
    if args.smoke:
        args.edits, args.reconstruction_edits = 2, 0
    results = run(args)
    write_results(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
