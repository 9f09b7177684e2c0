"""The shapes world's edit set: put "a {colour} {shape}" into a square box, in a colour not already there."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blended_pipeline.shapes.world import (
    COLOURS,
    PALETTE,
    SHAPE_SIZE_RANGE,
    SHAPES,
    box_mask,
    random_box,
    random_scene,
    render,
    shape_mask,
)


@dataclass(frozen=True)
class EditCase:
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) bool, True = edit
    prompt: str
    colour: str
    shape: str
    box: tuple[int, int, int, int]


def edit_case(rng: np.random.Generator, resolution: int) -> EditCase:
    """A random scene, a box of 50-60% of the side, and a prompt whose colour the scene does not hold."""
    scene = random_scene(rng, resolution)
    present = set(scene.background) | {s.colour for s in scene.shapes}
    colour = str(rng.choice([c for c in COLOURS if c not in present]))
    shape = str(rng.choice(SHAPES))
    box = random_box(rng, resolution)
    return EditCase(render(scene, resolution), box_mask(box, resolution), f"a {colour} {shape}", colour, shape, box)


def edit_cases(seed: int, count: int, resolution: int) -> list[EditCase]:
    rng = np.random.default_rng(seed)
    return [edit_case(rng, resolution) for _ in range(count)]


def ideal_edit(
    case: EditCase, rng: np.random.Generator, shape: str | None = None, colour: str | None = None
) -> np.ndarray:
    """The case's image with a shape drawn inside its box: what a perfect edit could look like."""
    left, top, right, bottom = case.box
    side = right - left
    resolution = case.image.shape[0]
    size = min(rng.uniform(*SHAPE_SIZE_RANGE) * resolution, side - 1)
    center = tuple(rng.uniform(low + size / 2, low + side - size / 2) for low in (left, top))
    image = case.image.copy()
    image[shape_mask(shape or case.shape, center, size, resolution) & case.mask] = PALETTE[colour or case.colour]
    return image
