"""The shipped latent checkpoint against diffusers' own inpaint pipeline on the same weights: the quality of both on
the same edits, and seconds per denoising step.

    python benchmarks/latent_vs_diffusers.py --out docs/figures/latent_vs_diffusers
    python benchmarks/latent_vs_diffusers.py --smoke --out /tmp/latent_vs_diffusers       # checks the script

Quality, on the named edit set (each hard kind and the standard edits, ``--edits`` of each): this pipeline at the
checkpoint's defaults, ``--setting`` overriding (its results ranked by the shapes CLIP, the background pasted),
and diffusers' ``StableDiffusionInpaintPipeline`` built from the same VAE, text encoder, UNet and scheduler, at the
same steps, strength and guidance, with as many results in the order it makes them (it does not rank). For each,
judged by the shapes world's pixel judge: top-1 (the first result), batch precision, diversity, the share of
edits whose every result keeps the input outside the mask, and the largest change outside it (0-255).

Speed: seconds per step of both (``common.per_step_against``), this pipeline without its ranking parts and with
diffusers' sampling work (one result, the start's noise reused); the target is at most 3% more than diffusers'.
The machine must be idle (``common.quiet_machine``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import numpy as np
import PIL.Image
import torch
from diffusers import StableDiffusionInpaintPipeline

from benchmarks.common import (
    TARGET_OVERHEAD,
    heading,
    load_for_edits,
    parse_setting,
    per_step_against,
    provenance,
    quiet_machine,
    with_all_hard,
    write_results,
)
from benchmarks.metrics import judged_edit, judged_results, summary
from blended_pipeline import SHAPES_LATENT_CHECKPOINT
from blended_pipeline.shapes.edits import EDIT_SETS, EditCase, edit_cases, hard_edit_cases

RANKING_PARTS = ("clip_model", "clip_tokenizer", "feature_extractor")


def diffusers_peer(pipe) -> StableDiffusionInpaintPipeline:
    """diffusers' inpaint pipeline on this pipeline's own VAE, text encoder, UNet and scheduler."""
    peer = StableDiffusionInpaintPipeline(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=pipe.unet,
        scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    peer.set_progress_bar_config(disable=True)
    return peer


def peer_edit(peer, case: EditCase, seed: int, settings: dict) -> dict:
    """One edit by diffusers' pipeline, its results judged in the order it made them: what ``summary`` averages."""
    side = case.image.shape[0]
    began = time.perf_counter()
    out = peer(
        prompt=case.prompt,
        image=PIL.Image.fromarray(case.image),
        mask_image=PIL.Image.fromarray(case.mask.astype(np.uint8) * 255),
        height=side,
        width=side,
        num_inference_steps=settings["num_inference_steps"],
        strength=settings["strength"],
        guidance_scale=settings["guidance_scale"],
        num_images_per_prompt=settings["num_images_per_prompt"],
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    return judged_results(list(np.round(out.images * 255).astype(np.uint8)), case, time.perf_counter() - began)


def quality(pipe, peer, cases: dict[str, list[EditCase]], settings: dict) -> dict[str, dict]:
    """Per pipeline and kind, ``summary``'s figures and the largest change outside the mask; an "all hard" row."""
    edit = {
        "ours": lambda case, seed: judged_edit(pipe, case, seed, settings),
        "diffusers": lambda case, seed: peer_edit(peer, case, seed, settings),
    }
    rows = {}
    for name, run in edit.items():
        by_kind = {}
        for kind, kind_cases in cases.items():
            edits = [run(case, index) for index, case in enumerate(kind_cases)]
            by_kind[kind] = {**summary(edits), "outside_change": max(e["outside_change"] for e in edits)}
            print(name, kind, f"top-1 {by_kind[kind]['top1_success']:.0%}", flush=True)
        rows[name] = with_all_hard(by_kind, summed=("edits", "refused_results"))
        hard = [row["outside_change"] for kind, row in by_kind.items() if kind != "standard"]
        if hard:
            rows[name]["all hard"]["outside_change"] = max(hard)
    return rows


def speed(pipe, peer, case: EditCase, settings: dict, steps: tuple[int, int], repeats: int) -> dict:
    """Seconds per step of both on one edit, this pipeline without its ranking parts
    (``common.per_step_against``)."""
    plain = type(pipe)(**{**pipe.components, **dict.fromkeys(RANKING_PARTS)})
    plain.set_progress_bar_config(disable=True)
    side = case.image.shape[0]
    call = dict(
        prompt=case.prompt,
        image=PIL.Image.fromarray(case.image),
        mask_image=PIL.Image.fromarray(case.mask.astype(np.uint8) * 255),
        guidance_scale=settings["guidance_scale"],
    )
    return per_step_against(peer, plain, call, steps, repeats, dict(height=side, width=side))


def markdown(results: dict) -> str:
    step = results["per_step"]
    verdict = "met" if step["overhead"] <= TARGET_OVERHEAD else "missed"
    lines = [
        heading(results) + f"; load average before {results['load_before']:.2f}, after {results['load_after']:.2f}",
        f"Edit set: {results['set']} (seed {results['seed']}), {results['edits_per_kind']} edits per kind, "
        f"{results['settings']['num_images_per_prompt']} results each; overrides: {results['overrides'] or 'none'}.",
        "",
        "| pipeline | kind | top-1 | batch precision | diversity | background exact | largest change outside (0-255) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, label in (("ours", "this pipeline (ranked)"), ("diffusers", "diffusers' inpaint (first result)")):
        for kind, row in results["quality"][name].items():
            lines.append(
                f"| {label} | {kind} | {row['top1_success']:.0%} | {row['batch_precision']:.0%} | "
                f"{row['diversity']:.1f} | {row['background_exact']:.0%} | {row['outside_change']} |"
            )
    lines += [
        "",
        f"Seconds per denoising step (steps {results['steps'][0]} and {results['steps'][1]}, {results['repeats']} "
        "runs each, alternating; one result, no ranking):",
        "",
        "| diffusers' inpaint pipeline s/step | this pipeline s/step | overhead | target |",
        "| --- | --- | --- | --- |",
        f"| {step['diffusers']:.4f} | {step['ours']:.4f} | {step['overhead']:+.1%} | "
        f"<= {TARGET_OVERHEAD:.0%}: {verdict} |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md)")
    parser.add_argument("--model", default=SHAPES_LATENT_CHECKPOINT)
    parser.add_argument("--set", choices=tuple(EDIT_SETS), default="heldout", dest="edit_set")
    parser.add_argument("--edits", type=int, default=24, help="edits per kind")
    parser.add_argument("--setting", type=parse_setting, action="append", default=[], help="NAME=VALUE")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--allow-busy", action="store_true", help="measure on a busy machine (the load is recorded)")
    parser.add_argument("--smoke", action="store_true", help="1 edit per kind, tiny settings: checks the script")
    args = parser.parse_args()
    load_before = quiet_machine(args.allow_busy or args.smoke)
    pipe, settings = load_for_edits(args.model, args.smoke)
    settings.update(dict(args.setting))
    peer = diffusers_peer(pipe)
    edits, steps, repeats = (1, (2, 4), 1) if args.smoke else (args.edits, (10, 50), args.repeats)
    seed = EDIT_SETS[args.edit_set]
    cases = {**hard_edit_cases(seed, edits, 32), "standard": edit_cases(seed, edits, 32)}
    results = {
        **provenance("latent_vs_diffusers.py"),
        "set": args.edit_set,
        "seed": seed,
        "edits_per_kind": edits,
        "settings": {k: v for k, v in settings.items() if k != "mixed_precision"},
        "overrides": dict(args.setting),
        "quality": quality(pipe, peer, cases, settings),
        "load_before": load_before,
        "steps": steps,
        "repeats": repeats,
        "per_step": speed(pipe, peer, cases["standard"][0], settings, steps, repeats),
        "load_after": os.getloadavg()[0],
    }
    write_results(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
