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


def export(unet_run: Path, clip_run: Path, out: Path) -> None:
    pipe = BlendedDiffusionPipeline(
        unet=UNet2DModel.from_pretrained(unet_run / "unet"),
        scheduler=DDPMScheduler.from_pretrained(unet_run / "scheduler"),
        clip_model=CLIPModel.from_pretrained(clip_run / "clip_model"),
        tokenizer=CLIPTokenizer.from_pretrained(clip_run / "tokenizer"),
        feature_extractor=CLIPImageProcessor.from_pretrained(clip_run / "feature_extractor"),
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
    args = parser.parse_args()
    export(args.unet, args.clip, args.out)


if __name__ == "__main__":
    main()
