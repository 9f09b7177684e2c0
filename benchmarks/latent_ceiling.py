"""What the latent world's autoencoder lets through: ideal edits, encoded and decoded, pasted, judged.

    python benchmarks/latent_ceiling.py --out docs/figures/latent_ceiling

Each edit of a set (the hard kinds and the standard box) gets as many ideal results as a latent edit makes: the
asked-for shape drawn into the mask at a random size and place (``shapes.edits.ideal_edit``). The judge reads each
as drawn, and again after the round trip every latent result takes: the VAE's decoding of the image's latents,
then the input pasted outside the mask. A UNet whose latents are like the encoder's makes results no sharper than
these; where the round trip spoils ideal results, it has to find latents that decode better than theirs.
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
from benchmarks.metrics import FAILURE_KINDS, failure_kind, psnr_where, to_uint8
from blended_pipeline import SHAPES_LATENT_CHECKPOINT
from blended_pipeline.shapes.edits import EDIT_SETS, EditCase, edit_cases, hard_edit_cases, ideal_edit
from blended_pipeline.shapes.judge import judge
from blended_pipeline.shapes.training_utils import vae_round_trip

RESULTS_PER_EDIT = 4  # as many as the latent pipeline makes and ranks by default


def round_trip(vae: AutoencoderKL, images: list[np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8 images through the VAE, back in uint8."""
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return to_uint8(vae_round_trip(vae, pixels))


def judged_kind(vae: AutoencoderKL, cases: list[EditCase], rng: np.random.Generator) -> dict:
    """Each case's ideal results judged as drawn and after the round trip (pasted outside the mask)."""
    drawn, kept, any_kept, refused, psnr = [], [], [], dict.fromkeys(FAILURE_KINDS, 0), []
    for case in cases:
        ideals = [ideal_edit(case, rng) for _ in range(RESULTS_PER_EDIT)]
        accepted = []
        for ideal, decoded in zip(ideals, round_trip(vae, ideals), strict=True):
            pasted = np.where(case.mask[..., None], decoded, case.image)
            verdict = judge(pasted, case.mask, case.prompt)
            if not verdict.ok:
                refused[failure_kind(verdict)] += 1
            drawn.append(judge(ideal, case.mask, case.prompt).ok)
            accepted.append(verdict.ok)
            psnr.append(psnr_where(pasted, ideal, case.mask))
        kept += accepted
        any_kept.append(any(accepted))
    return {
        "edits": len(cases),
        "ideal_accepted": float(np.mean(drawn)),
        "round_trip_accepted": float(np.mean(kept)),
        "round_trip_any_accepted": float(np.mean(any_kept)),
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
    if args.edits < 1:
        parser.error(f"--edits: expected at least 1 edit per kind, got {args.edits}")
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
        "results_per_edit": RESULTS_PER_EDIT,
        "rows": rows,
    }
    lines = [
        heading(results),
        f"Edit set: {args.edit_set} (seed {seed}), {args.edits} edits per kind, {RESULTS_PER_EDIT} ideal results "
        "each (the asked-for shape drawn into the mask at a random size and place), judged as drawn and after the "
        "VAE's round trip with the input pasted outside the mask; PSNR of the round trip against the ideal result "
        "inside the mask.",
        "",
        "| kind | ideal results accepted | after the round trip: results accepted | edits with any accepted "
        "| refused results: no colour / too small / wrong shape | PSNR in the mask |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, row in rows.items():
        refused = " / ".join(str(row["refused_results"][name]) for name in FAILURE_KINDS)
        lines.append(
            f"| {kind} | {row['ideal_accepted']:.0%} | {row['round_trip_accepted']:.0%} "
            f"| {row['round_trip_any_accepted']:.0%} | {refused} | {row['psnr_in_mask_db']:.1f} dB |"
        )
    write_results(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
