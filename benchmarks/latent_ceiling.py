"""What the latent world's autoencoder lets through: ideal edits, encoded and decoded, pasted, judged.

    python benchmarks/latent_ceiling.py --out docs/figures/latent_ceiling

Each edit of a set (the hard kinds and the standard box) gets an ideal result: the asked-for shape drawn into its
mask (``shapes.edits.ideal_edit``). The judge reads it as drawn, and again after the round trip every latent edit's
result takes: the VAE's decoding of the image's latents, then the input pasted outside the mask. Where the round
trip spoils ideal results, a latent UNet has to find latents that decode better than the ideal image's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

from benchmarks.common import heading, provenance, with_all_hard, write_results
from benchmarks.metrics import FAILURE_KINDS, failure_kind, psnr_outside
from blended_pipeline import SHAPES_LATENT_CHECKPOINT
from blended_pipeline.shapes.edits import EDIT_SETS, EditCase, edit_cases, hard_edit_cases, ideal_edit
from blended_pipeline.shapes.judge import judge


@torch.no_grad()
def round_trip(vae: AutoencoderKL, image: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) uint8 through the VAE: its posterior mean decoded, back in uint8."""
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    decoded = vae.decode(vae.encode(pixels).latent_dist.mean).sample.clamp(-1, 1)
    return np.round((decoded[0].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)


def judged_kind(vae: AutoencoderKL, cases: list[EditCase], rng: np.random.Generator) -> dict:
    """Each case's ideal edit judged as drawn and after the round trip (pasted outside the mask)."""
    drawn, kept, refused, psnr = [], [], dict.fromkeys(FAILURE_KINDS, 0), []
    for case in cases:
        ideal = ideal_edit(case, rng)
        pasted = np.where(case.mask[..., None], round_trip(vae, ideal), case.image)
        drawn.append(judge(ideal, case.mask, case.prompt).ok)
        verdict = judge(pasted, case.mask, case.prompt)
        kept.append(verdict.ok)
        if not verdict.ok:
            refused[failure_kind(verdict)] += 1
        psnr.append(psnr_outside(pasted, ideal, ~case.mask))  # inside the mask, where the decoder shows
    return {
        "edits": len(cases),
        "ideal_accepted": float(np.mean(drawn)),
        "round_trip_accepted": float(np.mean(kept)),
        "refused_results": refused,
        "psnr_in_mask_db": float(np.mean(psnr)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="prefix of the .json and .md written")
    parser.add_argument(
        "--vae", type=Path, default=Path(SHAPES_LATENT_CHECKPOINT) / "vae", help="an AutoencoderKL directory"
    )
    parser.add_argument("--set", choices=tuple(EDIT_SETS), default="heldout", dest="edit_set")
    parser.add_argument("--edits", type=int, default=96, help="edits per kind (and standard edits)")
    args = parser.parse_args()
    vae = AutoencoderKL.from_pretrained(args.vae).eval()
    seed = EDIT_SETS[args.edit_set]
    sets = {**hard_edit_cases(seed, args.edits, 32), "standard": edit_cases(seed, args.edits, 32)}
    rng = np.random.default_rng(seed)
    rows = {kind: judged_kind(vae, cases, rng) for kind, cases in sets.items()}
    rows = with_all_hard(rows, summed=("edits", "refused_results"))
    results = {
        **provenance("latent_ceiling.py"),
        "vae": str(args.vae),
        "set": args.edit_set,
        "seed": seed,
        "edits_per_kind": args.edits,
        "rows": rows,
    }
    lines = [
        heading(results),
        f"Edit set: {args.edit_set} (seed {seed}), {args.edits} edits per kind; each edit's ideal result (the "
        "asked-for shape drawn into the mask) judged as drawn and after the VAE's round trip with the input pasted "
        "outside the mask; PSNR of the round trip against the ideal result inside the mask, averaged over the edits.",
        "",
        "| kind | ideal accepted | after the round trip | refused after: no colour / too small / wrong shape "
        "| PSNR in the mask |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind, row in rows.items():
        refused = " / ".join(str(row["refused_results"][name]) for name in FAILURE_KINDS)
        lines.append(
            f"| {kind} | {row['ideal_accepted']:.0%} | {row['round_trip_accepted']:.0%} | {refused} "
            f"| {row['psnr_in_mask_db']:.1f} dB |"
        )
    write_results(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
