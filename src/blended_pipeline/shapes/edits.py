"""The shapes world's edit set: put "a {colour} {shape}" into a square box, in a colour not already there."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blended_pipeline.shapes.world import (
    COLOURS,
    PALETTE,
    PALETTE_RGB,
    SHAPE_SIZE_RANGE,
    SHAPES,
    Scene,
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
    colour = _absent_colour(rng, scene)
    shape = str(rng.choice(SHAPES))
    box = random_box(rng, resolution)
    return EditCase(render(scene, resolution), box_mask(box, resolution), f"a {colour} {shape}", colour, shape, box)


def edit_cases(seed: int, count: int, resolution: int) -> list[EditCase]:
    rng = np.random.default_rng(seed)
    return [edit_case(rng, resolution) for _ in range(count)]


@dataclass(frozen=True)
class BackgroundCase:
    """Background replacement: keep the first shape (``keep``, grown by a pixel), make the rest ``colour``."""

    image: np.ndarray
    keep: np.ndarray  # (H, W) bool, the object's pixels; the edit mask is its complement
    prompt: str
    colour: str


def background_case(rng: np.random.Generator, resolution: int) -> BackgroundCase:
    scene = random_scene(rng, resolution, num_shapes=1)
    colour = _absent_colour(rng, scene)
    shape = scene.shapes[0]
    keep = shape_mask(shape.kind, shape.center, shape.size + 2, resolution)
    return BackgroundCase(render(scene, resolution), keep, f"a {colour} background", colour)


@dataclass(frozen=True)
class ScribbleCase:
    """A rough blob of ``colour`` scribbled onto a scene (``strokes``: RGBA, opaque where scribbled)."""

    image: np.ndarray
    strokes: np.ndarray  # (H, W, 4) uint8
    prompt: str
    colour: str
    shape: str


def scribble_case(rng: np.random.Generator, resolution: int) -> ScribbleCase:
    """A blob of a few overlapping discs, about as big as a shape, that is none of the shapes."""
    scene = random_scene(rng, resolution)
    colour, shape = _absent_colour(rng, scene), str(rng.choice(SHAPES))
    size = rng.uniform(*SHAPE_SIZE_RANGE) * resolution
    center = rng.uniform(size / 2, resolution - size / 2, size=2)
    blob = np.zeros((resolution, resolution), dtype=bool)
    for _ in range(4):
        offset, diameter = rng.uniform(-size / 6, size / 6, size=2), rng.uniform(size / 2, size * 2 / 3)
        blob |= shape_mask("circle", tuple(center + offset), diameter, resolution)
    strokes = np.zeros((resolution, resolution, 4), dtype=np.uint8)
    strokes[blob] = (*PALETTE[colour], 255)
    return ScribbleCase(render(scene, resolution), strokes, f"a {colour} {shape}", colour, shape)


@dataclass(frozen=True)
class ExtendCase:
    """Extrapolation: ``image`` is ``scene`` with ``cut`` pixels removed on one side; the edit grows them back."""

    scene: np.ndarray  # the whole rendered scene: what the removed strip really held
    image: np.ndarray
    padding: tuple[int, int, int, int]  # (left, top, right, bottom) to extend by
    prompt: str


def extend_case(rng: np.random.Generator, resolution: int, cut: int) -> ExtendCase:
    """The prompt names the colour most of the removed strip has in the whole scene."""
    scene = render(random_scene(rng, resolution), resolution)
    side = int(rng.integers(4))
    padding = tuple(cut if i == side else 0 for i in range(4))
    left, top, right, bottom = padding
    image = scene[top : resolution - bottom, left : resolution - right]
    strip = scene[~box_mask((left, top, resolution - right, resolution - bottom), resolution)]
    values, counts = np.unique(strip, axis=0, return_counts=True)
    colour = COLOURS[int(np.flatnonzero((PALETTE_RGB == values[counts.argmax()]).all(axis=1))[0])]
    return ExtendCase(scene, image, padding, f"a {colour} background")


def _absent_colour(rng: np.random.Generator, scene: Scene) -> str:
    present = set(scene.background) | {s.colour for s in scene.shapes}
    return str(rng.choice([c for c in COLOURS if c not in present]))
