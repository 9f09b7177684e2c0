"""Object replacement/addition in the shapes world, from Python, offline (the checkpoint ships with the package).

python examples/edit_shapes_scene.py --out shapes-edit.png
"""

from __future__ import annotations

import argparse

import numpy as np
import PIL.Image
import torch

from blended_pipeline import SHAPES_CHECKPOINT, BlendedDiffusionPipeline
from blended_pipeline.shapes.judge import judge
from blended_pipeline.shapes.world import Scene, Shape, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="shapes-edit.png")
    parser.add_argument("--prompt", default="a red circle")
    parser.add_argument("--steps", type=int, default=100, help="schedule steps (fewer: faster, rougher)")
    args = parser.parse_args()

    scene = Scene(background=("blue", "white"), split=16.0, shapes=(Shape("square", "yellow", (9.0, 9.0), 11.0),))
    image = render(scene, 32)
    mask = np.zeros((32, 32), dtype=bool)
    mask[12:30, 13:31] = True  # an 18x18 box on the lower right: white = edit

    pipe = BlendedDiffusionPipeline.from_pretrained(SHAPES_CHECKPOINT)
    out = pipe(
        prompt=args.prompt,
        image=PIL.Image.fromarray(image),
        mask_image=PIL.Image.fromarray(mask),
        num_images_per_prompt=4,
        num_inference_steps=args.steps,
        generator=torch.Generator().manual_seed(0),
    )
    best = np.asarray(out.images[0])
    print(f"scores {[f'{s:.3f}' for s in out.scores]}; judge: {judge(best, mask, args.prompt).reason}")
    print(f"pixels outside the mask unchanged: {np.array_equal(best[~mask], image[~mask])}")
    row = np.concatenate(
        [image, np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8), *map(np.asarray, out.images)], 1
    )
    PIL.Image.fromarray(row).resize((row.shape[1] * 4, 128), PIL.Image.NEAREST).save(args.out)
    print(f"wrote {args.out} (input | mask | results, best first)")


if __name__ == "__main__":
    main()
