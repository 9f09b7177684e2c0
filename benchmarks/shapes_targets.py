"""Measure the shipped shapes models against their targets; writes JSON and a markdown table.

    python benchmarks/shapes_targets.py --out docs/figures/shapes_targets   # the published figures
    python benchmarks/shapes_targets.py --smoke --out /tmp/smoke             # seconds; what the tests run

Measured: the share of unconditional DDPM samples that are valid scenes (pixel judge), CLIP's zero-shot
accuracy on held-out single-shape scenes, and edits of the project's edit set at the CLI's defaults: top-1
success by the pixel judge, success of any of the samples, background exactness, with the extending
augmentations on (8 views) and off (1 view), and with the cheap gradient that skips the UNet's backward pass.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DDPMPipeline

from benchmarks.common import heading, load_for_edits, provenance, write_results
from benchmarks.metrics import edit_success
from blended_pipeline import SHAPES_CHECKPOINT, SHAPES_LATENT_CHECKPOINT, BlendedDiffusionPipeline
from blended_pipeline.shapes.judge import judge_scene
from blended_pipeline.shapes.train_clip import zero_shot_accuracy
from blended_pipeline.shapes.train_unet import scene_batch
from blended_pipeline.shapes.training_utils import vae_round_trip


def ddpm_validity(pipe: BlendedDiffusionPipeline, count: int, steps: int) -> dict:
    sampler = DDPMPipeline(unet=pipe.unet, scheduler=pipe.scheduler)
    sampler.set_progress_bar_config(disable=True)
    images = sampler(
        batch_size=count, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    uint8 = np.round(images * 255).astype(np.uint8)
    valid = [judge_scene(image).ok for image in uint8]
    return {"samples": count, "sampling_steps": steps, "valid_fraction": float(np.mean(valid))}, uint8


HELD_OUT_SEED = 999_983  # no training run draws its scenes from this seed


def vae_reconstruction(latent_model: str, count: int) -> dict:
    """The latent world's autoencoder on held-out scenes: PSNR and mean absolute error of the decoded posterior
    mean, in 8-bit units (what the latent pipeline's decoder shows before its paste)."""
    vae = AutoencoderKL.from_pretrained(latent_model, subfolder="vae").eval()
    clean = scene_batch(HELD_OUT_SEED, 0, count)
    decoded = vae_round_trip(vae, clean).clamp(-1, 1)
    error = (decoded - clean) * 127.5
    mse = float(error.pow(2).mean())
    return {"scenes": count, "psnr_db": 10 * math.log10(255**2 / mse), "mean_absolute_error": float(error.abs().mean())}


EDIT_RUNS = (  # (views, exact gradient through the UNet)
    (8, True),
    (1, True),
    (8, False),
)


def markdown(results: dict) -> str:
    lines = [
        heading(results),
        "",
        "| measure | value | target |",
        "| --- | --- | --- |",
        f"| DDPM samples that are valid scenes ({results['ddpm']['samples']} samples, "
        f"{results['ddpm']['sampling_steps']} steps) | {results['ddpm']['valid_fraction']:.0%} | >= 80% |",
        f"| CLIP zero-shot accuracy, 24 prompts ({results['clip']['scenes']} scenes) | "
        f"{results['clip']['zero_shot_accuracy']:.0%} | >= 90% |",
        f"| latent world's VAE: reconstruction PSNR ({results['vae']['scenes']} held-out scenes) | "
        f"{results['vae']['psnr_db']:.1f} dB | |",
        f"| latent world's VAE: mean absolute error | {results['vae']['mean_absolute_error']:.1f} / 255 | |",
    ]
    for run in results["edits"]:
        name = f"{run['num_augmentations']} views, {'exact' if run['backprop_through_unet'] else 'cheap'} gradient"
        target = ">= 70%" if run["num_augmentations"] > 1 and run["backprop_through_unet"] else ""
        lines.append(
            f"| edits, top-1 of {results['settings']['num_images_per_prompt']} succeeds ({name}, "
            f"{run['edits']} edits) | {run['top1_success']:.0%} | {target} |"
        )
        lines.append(f"| edits, any sample succeeds ({name}) | {run['any_sample_success']:.0%} | |")
        lines.append(f"| edits, background bit-exact ({name}) | {run['background_exact']:.0%} | 100% |")
        lines.append(f"| seconds per edit ({name}) | {run['seconds_per_edit']:.1f} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md, -samples.png)")
    parser.add_argument("--model", default=SHAPES_CHECKPOINT)
    parser.add_argument("--latent-model", default=SHAPES_LATENT_CHECKPOINT, help="its VAE's reconstruction")
    parser.add_argument("--vae-scenes", type=int, default=256)
    parser.add_argument("--ddpm-samples", type=int, default=200)
    parser.add_argument("--ddpm-steps", type=int, default=250)
    parser.add_argument("--clip-scenes", type=int, default=480)
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="tiny counts and steps: checks the code, not the models")
    args = parser.parse_args()
    pipe, settings = load_for_edits(args.model, args.smoke)
    if args.smoke:
        args.ddpm_samples, args.ddpm_steps, args.clip_scenes, args.edits, args.vae_scenes = 2, 4, 8, 1, 2
    ddpm, samples = ddpm_validity(pipe, args.ddpm_samples, args.ddpm_steps)
    results = {
        **provenance("shapes_targets.py"),
        "settings": settings,
        "ddpm": ddpm,
        "clip": {
            "scenes": args.clip_scenes,
            "zero_shot_accuracy": zero_shot_accuracy(
                pipe.clip_model, pipe.tokenizer, pipe.feature_extractor, count=args.clip_scenes
            ),
        },
        "vae": vae_reconstruction(args.latent_model, args.vae_scenes),
        "edits": [
            edit_success(pipe, args.edits, {**settings, "num_augmentations": views, "backprop_through_unet": exact})
            for views, exact in EDIT_RUNS
        ],
    }
    write_results(args.out, results, markdown(results))
    columns = min(8, len(samples))
    grid = samples[: min(64, len(samples) - len(samples) % columns)]
    rows = [np.concatenate(list(grid[i : i + columns]), axis=1) for i in range(0, len(grid), columns)]
    PIL.Image.fromarray(np.concatenate(rows, axis=0)).save(f"{args.out}-samples.png")


if __name__ == "__main__":
    main()
