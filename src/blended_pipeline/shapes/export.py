"""Assemble trained runs into a diffusers pipeline directory (the checkpoint shipped with the package)::

python -m blended_pipeline.shapes.export --unet runs/unet --clip runs/clip --out src/blended_pipeline/shapes/checkpoint
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from diffusers import DDPMScheduler, UNet2DModel
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

from blended_pipeline.pipeline import BlendedDiffusionPipeline
from blended_pipeline.shapes.train_clip import build_clip
from blended_pipeline.shapes.train_unet import build_unet
from blended_pipeline.shapes.training_utils import load_state

# The shapes model's edit strength: its cosine schedule keeps 38% of the input's signal at the paper's 0.75,
# and the UNet restores the old content in a third of the edits; at 0.9 (16%) it follows the prompt
# (benchmarks/edit_settings.py, docs/shapes.md).
SHAPES_STRENGTH = 0.9


def trained_unet(run: Path) -> UNet2DModel:
    """The run's exported EMA UNet, or the EMA rebuilt from ``state.pt`` where only the state was kept."""
    if (run / "unet").exists():
        return UNet2DModel.from_pretrained(run / "unet")
    unet = build_unet()
    unet.load_state_dict(load_state(run / "state.pt")["ema"]["shadow"])
    return unet


def trained_clip(run: Path, tokenizer: CLIPTokenizer) -> CLIPModel:
    """The run's exported CLIP, or the model rebuilt from ``state.pt`` where only the state was kept."""
    if (run / "clip_model").exists():
        return CLIPModel.from_pretrained(run / "clip_model")
    model = build_clip(tokenizer)
    model.load_state_dict(load_state(run / "state.pt")["model"])
    return model


def export(unet_run: Path, clip_run: Path, out: Path, default_strength: float = SHAPES_STRENGTH) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(clip_run / "tokenizer")
    pipe = BlendedDiffusionPipeline(
        unet=trained_unet(unet_run),
        scheduler=DDPMScheduler.from_pretrained(unet_run / "scheduler"),
        clip_model=trained_clip(clip_run, tokenizer),
        tokenizer=tokenizer,
        feature_extractor=CLIPImageProcessor.from_pretrained(clip_run / "feature_extractor"),
        default_strength=default_strength,
    )
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    pipe.save_pretrained(staging, safe_serialization=True)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unet", type=Path, required=True, help="run directory of train_unet")
    parser.add_argument("--clip", type=Path, required=True, help="run directory of train_clip")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--default-strength", type=float, default=SHAPES_STRENGTH, help="edits' default strength")
    args = parser.parse_args()
    export(args.unet, args.clip, args.out, args.default_strength)


if __name__ == "__main__":
    main()
