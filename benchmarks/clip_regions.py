"""How well a shapes CLIP reads a region the way guidance shows it: masked, on a grey surround, per kind of mask.

    python benchmarks/clip_regions.py --models shipped=SHIPPED,varied=runs/clip-varied --out /tmp/clip_regions

For each kind of hard edit (and the standard edits) the held-out cases' masks get the asked shape drawn inside,
as large as the mask allows up to the world's sizes; CLIP sees the masked picture, unwarped, and chooses among the
world's 24 "a {colour} {shape}" prompts. A model that misreads a kind of region guides and ranks it badly. A model
is a directory with ``clip_model/``, ``tokenizer/`` and ``feature_extractor/`` (a checkpoint or a training run);
``SHIPPED`` names the package's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import numpy as np
import torch

from benchmarks.common import heading, provenance, write_results
from blended_pipeline import SHAPES_CHECKPOINT
from blended_pipeline.guidance import CLIPGuidance
from blended_pipeline.shapes.edits import EDIT_SETS, EditCase, edit_cases, hard_edit_cases
from blended_pipeline.shapes.train_unet import RESOLUTION
from blended_pipeline.shapes.training_utils import to_model_range
from blended_pipeline.shapes.world import PALETTE, SHAPE_PROMPTS, SHAPE_SIZE_RANGE, shape_mask


def load_guidance(directory: Path) -> CLIPGuidance:
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(directory / "clip_model").eval()
    tokenizer = CLIPTokenizer.from_pretrained(directory / "tokenizer")
    return CLIPGuidance(model, tokenizer, CLIPImageProcessor.from_pretrained(directory / "feature_extractor"))


def drawn_in(case: EditCase, rng: np.random.Generator) -> np.ndarray:
    """The case's picture with the asked shape at its mask's centre, as large as fits in the mask (at most the
    largest size the world draws), the mask's other pixels left as they were."""
    rows, cols = np.nonzero(case.mask)
    centre = (float(cols.mean()) + 0.5, float(rows.mean()) + 0.5)
    size = rng.uniform(*SHAPE_SIZE_RANGE) * RESOLUTION
    while size > 3 and (shape_mask(case.shape, centre, size, RESOLUTION) & ~case.mask).any():
        size -= 0.5
    image = case.image.copy()
    image[shape_mask(case.shape, centre, size, RESOLUTION) & case.mask] = PALETTE[case.colour]
    return image


@torch.no_grad()
def accuracy(guidance: CLIPGuidance, cases: list[EditCase], seed: int) -> float:
    rng = np.random.default_rng(seed)
    images = to_model_range(np.stack([drawn_in(case, rng) for case in cases]))
    masks = torch.from_numpy(np.stack([case.mask for case in cases]))[:, None].float()
    target = guidance.prepare(list(SHAPE_PROMPTS), torch.device("cpu"))
    views = (images * masks).repeat_interleave(len(SHAPE_PROMPTS), dim=0)  # each view against every prompt
    scores = guidance.score(views, target).view(len(cases), len(SHAPE_PROMPTS))
    truth = torch.tensor([SHAPE_PROMPTS.index(case.prompt) for case in cases])
    return float((scores.argmax(dim=1) == truth).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", required=True, help="NAME=DIR pairs separated by ',' (DIR 'SHIPPED': the package's)"
    )
    parser.add_argument("--cases", type=int, default=200, help="cases per kind")
    parser.add_argument("--out", type=Path, required=True, help="prefix of the .json and .md written")
    args = parser.parse_args()
    models = dict(pair.split("=", 1) for pair in args.models.split(","))
    kinds = hard_edit_cases(EDIT_SETS["heldout"], args.cases, RESOLUTION)
    kinds["standard"] = edit_cases(EDIT_SETS["heldout"], args.cases, RESOLUTION)
    table = {}
    for name, place in models.items():
        guidance = load_guidance(Path(SHAPES_CHECKPOINT if place == "SHIPPED" else place))
        table[name] = {kind: accuracy(guidance, cases, seed=0) for kind, cases in kinds.items()}
    results = {**provenance("clip_regions.py"), "models": models, "cases_per_kind": args.cases, "accuracy": table}
    lines = [
        heading(results),
        "",
        f"CLIP's choice among the {len(SHAPE_PROMPTS)} shape prompts for the asked shape drawn in the mask, "
        f"masked view ({args.cases} held-out cases per kind, seed {EDIT_SETS['heldout']}):",
        "",
        "| model | " + " | ".join(kinds) + " |",
        "| --- |" + " --- |" * len(kinds),
    ]
    lines += [f"| {name} | " + " | ".join(f"{row[kind]:.0%}" for kind in kinds) + " |" for name, row in table.items()]
    write_results(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
