"""The paper's four applications on the shipped shapes model, offline, from Python.

    python examples/applications.py --out applications/

Writes one picture per application (input | mask | best result) and prints what the pixel judge says; the
fifth edits the scene upscaled 4x through the crop path with a feathered mask.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from blended_pipeline import SHAPES_CHECKPOINT, BlendedDiffusionPipeline
from blended_pipeline.applications import (
    BACKGROUND_STRENGTH,
    apply_scribble,
    extend_canvas,
    invert_mask,
)
from blended_pipeline.shapes.judge import judge
from blended_pipeline.shapes.world import PALETTE, Scene, Shape, render, shape_mask


def save_row(path: Path, image: PIL.Image.Image, mask: PIL.Image.Image, result: PIL.Image.Image) -> None:
    row = np.concatenate([np.asarray(p.convert("RGB")) for p in (image, mask, result)], axis=1)
    PIL.Image.fromarray(row).resize((row.shape[1] * 4, row.shape[0] * 4), PIL.Image.NEAREST).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("applications"))
    parser.add_argument("--steps", type=int, default=100, help="schedule steps (fewer: faster, rougher)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pipe = BlendedDiffusionPipeline.from_pretrained(SHAPES_CHECKPOINT)
    scene = Scene(background=("yellow",), split=32.0, shapes=(Shape("circle", "blue", (12.0, 14.0), 12.0),))
    image = PIL.Image.fromarray(render(scene, 32))
    circle = shape_mask("circle", (12.0, 14.0), 12.0, 32)

    def edit(name: str, prompt: str, image: PIL.Image.Image, mask: PIL.Image.Image, **kwargs) -> None:
        out = pipe(
            prompt=prompt,
            image=image,
            mask_image=mask,
            num_inference_steps=args.steps,
            generator=torch.Generator().manual_seed(0),
            **kwargs,
        )
        save_row(args.out / f"{name}.png", image, mask, out.images[0])
        verdict = judge(np.asarray(out.images[0]), np.asarray(mask.convert("L")) > 127, prompt)
        print(f"{name}: '{prompt}' -> {verdict.reason} ({'ok' if verdict.ok else 'not judged a success'})")

    # 1. Object replacement / addition inside a mask.
    box = np.zeros((32, 32), np.uint8)
    box[12:30, 13:31] = 255
    edit("1-object", "a red square", image, PIL.Image.fromarray(box))
    # 2. Background replacement: everything but the object (a slightly grown mask of the circle).
    grown = PIL.Image.fromarray(circle.astype(np.uint8) * 255).resize((32, 32))
    edit("2-background", "a green background", image, invert_mask(grown), strength=BACKGROUND_STRENGTH)
    # 3. Scribble: a rough purple blob, kept by starting lower down the schedule (the checkpoint's scribble strength).
    strokes = np.zeros((32, 32, 4), np.uint8)
    strokes[18:29, 19:30] = (*PALETTE["purple"], 255)
    painted, stroke_mask = apply_scribble(image, PIL.Image.fromarray(strokes), dilation=2)
    edit("3-scribble", "a purple circle", painted, stroke_mask, strength=pipe.config.scribble_strength)
    # 4. Extrapolation: a wider canvas; the new area on the right is filled.
    canvas, new_area = extend_canvas(image.crop((0, 0, 24, 32)), 0, 0, 8, 0)
    edit("4-extend", "a yellow background", canvas, new_area)
    # 5. A 128x128 image (the scene upscaled 4x): edited on a crop around the mask, with a feathered border.
    large, large_box = (p.resize((128, 128), PIL.Image.NEAREST) for p in (image, PIL.Image.fromarray(box)))
    edit("5-large-soft", "a red square", large, large_box, mask_blur=4)
    print(f"wrote {args.out}/1-object.png ... 5-large-soft.png")


if __name__ == "__main__":
    main()
