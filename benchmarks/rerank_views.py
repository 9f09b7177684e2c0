"""Top-1 success of rankings that show CLIP other views of results already made, and the ceiling any ranking has.

    python benchmarks/hard_edits.py --edits 24 --keep-results /tmp/kept.npz --out /tmp/hard
    python benchmarks/rerank_views.py /tmp/kept.npz --search --out /tmp/rerank-views    # several .npz may be given

The pipeline ranks by CLIP's score of the masked region on a grey surround plus that of the whole result, less
0.2 times the colour step at the mask's edge (the shapes checkpoint's ``default_rank_border_weight``). Here each
kept result is also scored on other views, so other rankings can be compared on the same results: "crop", the
square around the mask enlarged to CLIP's input (``augment.crop_to_mask``, as ``clip_view="crop"`` guides), where a
small region is as large as any object; "views", the mean score over the guidance's own augmented views of the
masked region (8, seeded), which guidance optimised rather than the plain view; and "similarity", how alike CLIP
finds the result's region and the input's (a result that continues what was there is not the edit asked for).
``--search`` adds the weights of a grid that do best on the given results: chosen on one set, they are to be
checked on another. "any" is the share of edits with at least one accepted result: no ranking of these results
can do better. Batch precision does not change. ``--ranking-clip DIR`` scores with another CLIP, as a pipeline with
that ``ranking_clip_model`` ranks. (``rerank_kept.py`` varies the edge weight of the pipeline's own
ranking, and what a user shown the best K would see.)
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import kinds_in, load_for_edits, load_kept, provenance, with_all_hard, write_results
from blended_pipeline import SHAPES_CHECKPOINT, BlendedDiffusionPipeline
from blended_pipeline.augment import crop_to_mask
from blended_pipeline.guidance import CLIPGuidance, clip_pixel_values
from blended_pipeline.ranking import edge_step
from blended_pipeline.shapes.training_utils import to_model_range

RANKINGS: dict[str, dict[str, float]] = {
    "masked + whole (shipped)": {"masked": 1, "whole": 1, "edge": -0.2},
    "crop + whole": {"crop": 1, "whole": 1, "edge": -0.2},
    "masked + crop + whole": {"masked": 1, "crop": 1, "whole": 1, "edge": -0.2},
    "views + whole": {"views": 1, "whole": 1, "edge": -0.2},
    "masked + views + whole": {"masked": 1, "views": 1, "whole": 1, "edge": -0.2},
    "shipped - 0.5 similarity": {"masked": 1, "whole": 1, "edge": -0.2, "similarity": -0.5},
    "masked + 0.25 whole + 0.5 crop - 0.1 edge": {"masked": 1, "whole": 0.25, "crop": 0.5, "edge": -0.1},
}
"""Weights of each score; every ranking but the shipped one is a candidate. The next to last pushes away from
results CLIP finds like the input's region; the last is the best of ``--search`` on the tuning set's results."""
SEARCH_GRID = {
    "masked": (0, 0.5, 1, 2, 4),
    "whole": (0, 0.25, 0.5, 1),
    "crop": (0, 0.5, 1, 2),
    "edge": (0, -0.1, -0.2, -0.3, -0.5),
}
VIEWS = 8


@torch.no_grad()
def view_scores(
    pipe: BlendedDiffusionPipeline, source: np.ndarray, results: np.ndarray, mask: np.ndarray, prompt: str
) -> dict:
    """Each view's CLIP score for one edit's results, their edge steps, and how alike CLIP finds each result's
    masked region and the input's (cosine of the image embeddings): name -> (results,) array."""
    guidance = pipe._clip_guidance(pipe.ranking_clip_model)  # the CLIP that ranks: the guiding one unless another
    images = to_model_range(results)
    masks = torch.from_numpy(mask).float()[None, None].expand(len(results), 1, *mask.shape)
    target = guidance.prepare([prompt] * len(results), "cpu")
    masked = images * masks
    embeddings = F.normalize(image_embeddings(guidance, torch.cat([to_model_range(source[None]) * masks[:1], masked])))
    views = pipe.augmentation(masked, VIEWS, torch.Generator().manual_seed(0))
    view_target = guidance.prepare([prompt] * len(views), "cpu")
    return {
        "masked": guidance.score(masked, target).numpy(),
        "whole": guidance.score(images, target).numpy(),
        "crop": guidance.score(crop_to_mask(masked, masks), target).numpy(),
        "views": guidance.score(views, view_target).view(VIEWS, -1).mean(dim=0).numpy(),
        "edge": edge_step(images, masks).numpy(),
        "similarity": (embeddings[1:] @ embeddings[0]).numpy(),
    }


def image_embeddings(guidance: CLIPGuidance, images: torch.Tensor) -> torch.Tensor:
    pixels = clip_pixel_values(images, guidance.feature_extractor)
    return guidance.clip_model.get_image_features(pixel_values=pixels).pooler_output


def scored_edits(
    pipe: BlendedDiffusionPipeline, kept: dict[str, np.ndarray], kind: str
) -> list[tuple[dict, np.ndarray]]:
    """Each of the kind's edits: its results' scores (``view_scores``) and the judge's verdicts."""
    columns = (kept[f"{kind}/{key}"] for key in ("image", "results", "verdicts", "mask", "prompt"))
    return [
        (view_scores(pipe, source, results, mask, str(prompt)), verdicts)
        for source, results, verdicts, mask, prompt in zip(*columns, strict=True)
    ]


def top1(edits: list[tuple[dict, np.ndarray]], weights: dict[str, float]) -> float:
    """The share of edits whose best result by these weights of the scores the judge accepted."""
    firsts = [np.argmax(sum(weight * scores[name] for name, weight in weights.items())) for scores, _ in edits]
    return float(np.mean([verdicts[int(first)] for first, (_, verdicts) in zip(firsts, edits, strict=True)]))


def search(scored: dict[str, list]) -> dict[str, float]:
    """The weights of ``SEARCH_GRID`` with the best top-1 over the hard kinds (ties: the better standard edits,
    then the first in the grid's order)."""
    hard = [edits for kind, edits in scored.items() if kind != "standard"]
    best, best_key = {}, (-1.0, -1.0)
    for values in itertools.product(*SEARCH_GRID.values()):
        weights = dict(zip(SEARCH_GRID, values, strict=True))
        if not any(weights[name] for name in ("masked", "whole", "crop")):
            continue
        key = (np.mean([top1(edits, weights) for edits in hard]), top1(scored.get("standard", []), weights))
        if key > best_key:
            best, best_key = weights, key
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kept", type=Path, nargs="+", help=".npz files written by hard_edits.py --keep-results")
    parser.add_argument("--out", type=Path, required=True, help="prefix of the .json and .md written")
    parser.add_argument("--model", default=SHAPES_CHECKPOINT)
    parser.add_argument("--ranking-clip", help="a CLIPModel directory that scores in place of the checkpoint's CLIP")
    parser.add_argument("--search", action="store_true", help="also the best weights of a grid on these results")
    args = parser.parse_args()
    pipe, _ = load_for_edits(args.model, ranking_clip=args.ranking_clip)
    kept = load_kept(args.kept)
    kinds = kinds_in(kept)
    scored = {kind: scored_edits(pipe, kept, kind) for kind in kinds}
    rankings = dict(RANKINGS)
    if args.search:
        found = search(scored)
        rankings["searched: " + ", ".join(f"{name} {weight:g}" for name, weight in found.items())] = found
    rows = with_all_hard(
        {
            kind: {
                "edits": len(edits),
                "batch_precision": float(np.mean([verdicts.mean() for _, verdicts in edits])),
                "any": float(np.mean([verdicts.any() for _, verdicts in edits])),
                "top1": {name: top1(edits, weights) for name, weights in rankings.items()},
            }
            for kind, edits in scored.items()
        }
    )
    results = {
        **provenance("rerank_views.py"),
        "kept": [str(path) for path in args.kept],
        "ranking_clip": args.ranking_clip,
        "rankings": rankings,
        "rows": rows,
    }
    lines = [
        f"Machine: {results['machine']}; date: {results['date']}; command: `{results['command']}`",
        "",
        "Top-1 by ranking (weights of the scores in the .json); any: the share of edits with an accepted result.",
        "",
        "| kind | edits | batch precision | any | " + " | ".join(rankings) + " |",
        "| --- " * (4 + len(rankings)) + "|",
    ]
    for kind, row in rows.items():
        cells = [f"{row['top1'][name]:.0%}" for name in rankings]
        lines.append(
            f"| {kind} | {row['edits']} | {row['batch_precision']:.0%} | {row['any']:.0%} | " + " | ".join(cells) + " |"
        )
    write_results(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
