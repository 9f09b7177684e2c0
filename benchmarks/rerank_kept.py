"""Top-1 success of other rankings of results already made: the edge-step weight, with no new edits.

    python benchmarks/hard_edits.py --edits 12 --keep-results /tmp/kept.npz --out /tmp/hard
    python benchmarks/rerank_kept.py /tmp/kept.npz --weights 0,0.1,0.2,0.3,0.5 --out /tmp/rerank
    python benchmarks/rerank_kept.py /tmp/kept6.npz --weights 0.2 --best 4 --out /tmp/best4   # 4 shown of 6 made

Ranking runs after the edit and sees only its results, so ranking the kept results again with another
``rank_border_weight`` (``ranking.rank`` with the shipped CLIP, "both" as the pipeline does) gives the top-1 that
an edit with that weight would have had; batch precision does not change. Weight 0 repeats the pipeline's own
ranking up to the kept pictures' 8-bit rounding (which can swap two near-equal scores), so compare the other
columns with it rather than with the run's reported top-1. ``--best K`` also reports the share of accepted results
among each edit's K best: the batch precision a user would see if the edit made all the kept results and showed
only its K best.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import numpy as np
import torch

from benchmarks.common import kinds_in, load_for_edits, load_kept, provenance, with_all_hard, write_results
from blended_pipeline import SHAPES_CHECKPOINT, BlendedDiffusionPipeline
from blended_pipeline.ranking import rank
from blended_pipeline.shapes.training_utils import to_model_range


def top1_by_weight(
    pipe: BlendedDiffusionPipeline, kept: dict[str, np.ndarray], kind: str, weights: list[float], best: int | None
) -> dict:
    """For each weight, the share of the kind's edits whose first result, so ranked, the judge accepted (and with
    ``best``, the share of accepted results among each edit's ``best`` first)."""
    guidance = pipe._clip_guidance()
    hits: dict[float, list[bool]] = {weight: [] for weight in weights}
    shown: dict[float, list[float]] = {weight: [] for weight in weights}
    columns = (kept[f"{kind}/{key}"] for key in ("results", "verdicts", "mask", "prompt"))
    for results, verdicts, mask, prompt in zip(*columns, strict=True):
        images = to_model_range(results)
        masks = torch.from_numpy(mask).float()[None, None].expand(len(results), 1, *mask.shape)
        target = guidance.prepare([str(prompt)] * len(results), "cpu")
        for weight in weights:
            order, _ = rank(guidance, images, masks, target, "both", len(results), weight)
            hits[weight].append(bool(verdicts[int(order[0])]))
            if best:
                shown[weight].append(float(np.mean([verdicts[int(i)] for i in order[:best]])))
    row = {
        "edits": len(hits[weights[0]]),
        "batch_precision": float(kept[f"{kind}/verdicts"].mean()),
        "top1_by_weight": {str(weight): float(np.mean(found)) for weight, found in hits.items()},
    }
    if best:
        row["best_precision_by_weight"] = {str(weight): float(np.mean(share)) for weight, share in shown.items()}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kept", type=Path, help="a .npz written by hard_edits.py --keep-results")
    parser.add_argument("--weights", default="0,0.1,0.2,0.3,0.5", help="comma-separated rank_border_weight values")
    parser.add_argument("--out", type=Path, required=True, help="prefix of the .json and .md written")
    parser.add_argument("--model", default=SHAPES_CHECKPOINT)
    parser.add_argument("--best", type=int, help="K: also the precision of each edit's K best results")
    args = parser.parse_args()
    weights = [float(weight) for weight in args.weights.split(",")]
    pipe, _ = load_for_edits(args.model)
    kept = load_kept([args.kept])
    kinds = kinds_in(kept)
    made = kept[f"{kinds[0]}/verdicts"].shape[1]
    if args.best is not None and not 1 <= args.best <= made:
        parser.error(f"--best: expected 1 to {made} (the results each kept edit has), got {args.best}")
    rows = with_all_hard({kind: top1_by_weight(pipe, kept, kind, weights, args.best) for kind in kinds})
    results = {
        **provenance("rerank_kept.py"),
        "kept": str(args.kept),
        "weights": weights,
        "best": args.best,
        "rows": rows,
    }
    best_columns = [f"precision of the {args.best} best, weight {w:g}" for w in weights] if args.best else []
    lines = [
        f"Machine: {results['machine']}; date: {results['date']}; command: `{results['command']}`",
        "",
        "| kind | edits | batch precision | "
        + " | ".join([f"top-1, weight {w:g}" for w in weights] + best_columns)
        + " |",
        "| --- " * (3 + len(weights) + len(best_columns)) + "|",
    ]
    for kind, row in rows.items():
        cells = [f"{row['top1_by_weight'][str(w)]:.0%}" for w in weights]
        cells += [f"{row['best_precision_by_weight'][str(w)]:.0%}" for w in weights] if args.best else []
        lines.append(f"| {kind} | {row['edits']} | {row['batch_precision']:.0%} | " + " | ".join(cells) + " |")
    write_results(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
