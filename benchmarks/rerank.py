"""Top-1 success of other rankings of results already made (``hard_edits.py --keep-results``), with no new edits.

    python benchmarks/hard_edits.py --edits 24 --keep-results /tmp/kept.npz --out /tmp/hard
    python benchmarks/rerank.py edge /tmp/kept.npz --weights 0,0.1,0.2,0.3,0.5 --out /tmp/rerank
    python benchmarks/rerank.py edge /tmp/kept6.npz --weights 0.2 --best 4 --out /tmp/best4   # 4 shown of 6 made
    python benchmarks/rerank.py views /tmp/kept.npz --search --out /tmp/rerank-views    # several .npz may be given

Ranking runs after the edit and sees only its results, so ranking the kept results again gives the top-1 that an
edit so ranked would have had; batch precision does not change.

``edge``: the pipeline's own ranking (``ranking.rank`` with the checkpoint's guiding CLIP, "both" as the pipeline
does) at other ``rank_border_weight`` values. Weight 0 repeats the pipeline's ranking by CLIP alone up to the kept
pictures' 8-bit rounding (which can swap two near-equal scores), so compare the other columns with it rather than
with the run's reported top-1. ``--best K`` also reports the share of accepted results among each edit's K best:
the batch precision a user would see if the edit made all the kept results and showed only its K best.

``views``: each kept result is also scored on other views. The pipeline ranks by CLIP's score of the masked region
on a grey surround plus that of the whole result, less the checkpoint's ``default_rank_border_weight`` (0.2 for the
pixel shapes checkpoint, 0 for the latent one) times the colour step at the mask's edge; the others (each with
the pixel checkpoint's 0.2): "crop", the square around the mask enlarged to CLIP's
input (``augment.crop_to_mask``, as ``clip_view="crop"`` guides), where a small region is as large as any object;
"views", the mean score over the guidance's own augmented views of the masked region (8, seeded), which guidance
optimised rather than the plain view; and "similarity", how alike CLIP finds the result's region and the input's
(a result that continues what was there is not the edit asked for). ``--search`` adds the weights of a grid that
do best on the given results: chosen on one set, they are to be checked on another. "any" is the share of edits
with at least one accepted result: no ranking of these results can do better. ``--ranking-clip DIR`` scores with
another CLIP, as a pipeline with that ``ranking_clip_model`` ranks. Neither command applies rival prompts
(``rank_rivals``) or the denoiser's vote (``rank_denoiser_weight``: rerank loads no denoiser or VAE to cast it): a
checkpoint that sets either ranks otherwise than "shipped" here, as the latent one does.
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

from benchmarks.common import heading, kinds_in, load_for_edits, load_kept, provenance, with_all_hard, write_results
from benchmarks.metrics import diversity
from blended_pipeline import SHAPES_CHECKPOINT, BlendedDiffusionPipeline
from blended_pipeline.augment import ProjectiveAugmentation, crop_to_mask
from blended_pipeline.guidance import CLIPGuidance, clip_pixel_values
from blended_pipeline.ranking import edge_step, rank
from blended_pipeline.shapes.training_utils import to_model_range

RANKINGS: dict[str, dict[str, float]] = {
    "crop + whole": {"crop": 1, "whole": 1, "edge": -0.2},
    "masked + crop + whole": {"masked": 1, "crop": 1, "whole": 1, "edge": -0.2},
    "views + whole": {"views": 1, "whole": 1, "edge": -0.2},
    "masked + views + whole": {"masked": 1, "views": 1, "whole": 1, "edge": -0.2},
    "masked + 0.25 whole + 0.5 crop - 0.1 edge": {"masked": 1, "whole": 0.25, "crop": 0.5, "edge": -0.1},
}
"""Weights of each score of the candidate rankings (each with the pixel checkpoint's edge weight); the last is the
best of ``--search`` on the pixel tuning set's results. ``views`` adds the checkpoint's own ranking before them and,
after them, that ranking pushed away from results CLIP finds like the input's region."""
SEARCH_GRID = {
    "masked": (0, 0.5, 1, 2, 4),
    "whole": (0, 0.25, 0.5, 1),
    "crop": (0, 0.5, 1, 2),
    "edge": (0, -0.1, -0.2, -0.3, -0.5),
}
VIEWS = 8


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
        "diversity": kept_diversity(kept, kind),
        "top1_by_weight": {str(weight): float(np.mean(found)) for weight, found in hits.items()},
    }
    if best:
        row["best_precision_by_weight"] = {str(weight): float(np.mean(share)) for weight, share in shown.items()}
    return row


def kept_diversity(kept: dict[str, np.ndarray], kind: str) -> float:
    """The mean diversity of the kept edits of ``kind``: beside batch precision, it tells near-copies (a
    restart) from independent results."""
    pairs = zip(kept[f"{kind}/results"], kept[f"{kind}/mask"], strict=True)
    return float(np.mean([diversity(list(results), mask) for results, mask in pairs]))


def by_edge_weight(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[dict, list[str]]:
    """The ``edge`` results and table."""
    weights = [float(weight) for weight in args.weights.split(",")]
    pipe, _ = load_for_edits(args.model)
    kept = load_kept([args.kept])
    kinds = kinds_in(kept)
    made = kept[f"{kinds[0]}/verdicts"].shape[1]
    if args.best is not None and not 1 <= args.best <= made:
        parser.error(f"--best: expected 1 to {made} (the results each kept edit has), got {args.best}")
    rows = with_all_hard({kind: top1_by_weight(pipe, kept, kind, weights, args.best) for kind in kinds})
    results = {**provenance("rerank.py"), "kept": str(args.kept), "weights": weights, "best": args.best, "rows": rows}
    best_columns = [f"precision of the {args.best} best, weight {w:g}" for w in weights] if args.best else []
    lines = [
        "| kind | edits | batch precision | diversity | "
        + " | ".join([f"top-1, weight {w:g}" for w in weights] + best_columns)
        + " |",
        "| --- " * (4 + len(weights) + len(best_columns)) + "|",
    ]
    for kind, row in rows.items():
        cells = [f"{row['top1_by_weight'][str(w)]:.0%}" for w in weights]
        cells += [f"{row['best_precision_by_weight'][str(w)]:.0%}" for w in weights] if args.best else []
        lines.append(
            f"| {kind} | {row['edits']} | {row['batch_precision']:.0%} | {row['diversity']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return results, lines


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
    augmentation = getattr(pipe, "augmentation", None) or ProjectiveAugmentation()  # a latent pipeline guides by none
    views = augmentation(masked, VIEWS, torch.Generator().manual_seed(0))
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


def by_views(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """The ``views`` results and table."""
    pipe, settings = load_for_edits(args.model, ranking_clip=args.ranking_clip)
    kept = load_kept(args.kept)
    scored = {kind: scored_edits(pipe, kept, kind) for kind in kinds_in(kept)}
    shipped = {"masked": 1, "whole": 1, "edge": 0.0 - settings["rank_border_weight"]}  # the checkpoint's own
    rankings = {
        "masked + whole (shipped)": shipped,
        **RANKINGS,
        "shipped - 0.5 similarity": {**shipped, "similarity": -0.5},
    }
    if args.search:
        found = search(scored)
        rankings["searched: " + ", ".join(f"{name} {weight:g}" for name, weight in found.items())] = found
    rows = with_all_hard(
        {
            kind: {
                "edits": len(edits),
                "batch_precision": float(np.mean([verdicts.mean() for _, verdicts in edits])),
                "diversity": kept_diversity(kept, kind),
                "any": float(np.mean([verdicts.any() for _, verdicts in edits])),
                "top1": {name: top1(edits, weights) for name, weights in rankings.items()},
            }
            for kind, edits in scored.items()
        }
    )
    results = {
        **provenance("rerank.py"),
        "kept": [str(path) for path in args.kept],
        "ranking_clip": args.ranking_clip,
        "rankings": rankings,
        "rows": rows,
    }
    lines = [
        "Top-1 by ranking (weights of the scores in the .json); any: the share of edits with an accepted result.",
        "",
        "| kind | edits | batch precision | diversity | any | " + " | ".join(rankings) + " |",
        "| --- " * (5 + len(rankings)) + "|",
    ]
    for kind, row in rows.items():
        cells = [f"{row['top1'][name]:.0%}" for name in rankings]
        lines.append(
            f"| {kind} | {row['edits']} | {row['batch_precision']:.0%} | {row['diversity']:.1f} | {row['any']:.0%} | "
            + " | ".join(cells)
            + " |"
        )
    return results, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    rankings = parser.add_subparsers(dest="ranking", required=True)
    edge = rankings.add_parser("edge", help="the pipeline's ranking at other edge-step weights")
    edge.add_argument("kept", type=Path, help="a .npz written by hard_edits.py --keep-results")
    edge.add_argument("--weights", default="0,0.1,0.2,0.3,0.5", help="comma-separated rank_border_weight values")
    edge.add_argument("--best", type=int, help="K: also the precision of each edit's K best results")
    views = rankings.add_parser("views", help="rankings on other views, and the ceiling of any ranking")
    views.add_argument("kept", type=Path, nargs="+", help=".npz files written by hard_edits.py --keep-results")
    views.add_argument("--ranking-clip", help="a CLIPModel directory that scores in place of the checkpoint's CLIP")
    views.add_argument("--search", action="store_true", help="also the best weights of a grid on these results")
    for ranking in (edge, views):
        ranking.add_argument("--out", type=Path, required=True, help="prefix of the .json and .md written")
        ranking.add_argument("--model", default=SHAPES_CHECKPOINT)
    args = parser.parse_args()
    results, table = by_edge_weight(parser, args) if args.ranking == "edge" else by_views(args)
    lines = [heading(results), "", *table]
    write_results(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
