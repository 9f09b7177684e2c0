"""The shapes world: flat palette colours, circles, squares and upright triangles.

Scenes are rendered in batches with numpy (no Python loop over pixels) so that training spends its CPU on
the models, not on drawing. Everything is drawn from a ``numpy.random.Generator`` and is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (150, 60, 190),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
PALETTE_RGB = np.array([PALETTE[c] for c in COLOURS], dtype=np.uint8)

SHAPE_SIZE_RANGE = (0.30, 0.45)  # fraction of the image side
BAND_SPLIT_RANGE = (0.40, 0.60)  # fraction of the image height


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    center: tuple[float, float]  # (x, y) in pixels
    size: float  # side / diameter in pixels


@dataclass(frozen=True)
class Scene:
    """What a rendered image holds; ``background`` has one colour or two (top band, bottom band)."""

    background: tuple[str, ...]
    split: float  # row (in pixels) where the bottom band starts; the image height for one colour
    shapes: tuple[Shape, ...]

    def caption(self) -> str:
        """A caption such as "a red circle and a blue square on a yellow background"."""
        objects = " and ".join(f"a {s.colour} {s.kind}" for s in self.shapes)
        return f"{objects} on {background_phrase(self.background)}"


def background_phrase(colours: tuple[str, ...]) -> str:
    if len(colours) == 1:
        return f"a {colours[0]} background"
    return f"a {colours[0]} and {colours[1]} background"


def shape_mask(kind: str, center: tuple[float, float], size: float, resolution: int) -> np.ndarray:
    """Boolean (resolution, resolution) coverage of one shape, sampled at pixel centres."""
    ys, xs = np.mgrid[0:resolution, 0:resolution].astype(np.float32) + 0.5
    cx, cy = center
    half = size / 2
    if kind == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= half**2
    if kind == "square":
        return (np.abs(xs - cx) <= half) & (np.abs(ys - cy) <= half)
    if kind == "triangle":
        top = cy - half
        return (ys <= cy + half) & (ys >= top) & (np.abs(xs - cx) <= (ys - top) / 2)
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPES}")


def ellipse_mask(center: tuple[float, float], width: float, height: float, resolution: int) -> np.ndarray:
    """Boolean (resolution, resolution) ellipse with these axes, sampled at pixel centres: round masks and regions."""
    ys, xs = np.mgrid[:resolution, :resolution] + 0.5
    return ((xs - center[0]) / (width / 2)) ** 2 + ((ys - center[1]) / (height / 2)) ** 2 <= 1


def render(scene: Scene, resolution: int) -> np.ndarray:
    """The scene as a (resolution, resolution, 3) uint8 image."""
    image = np.empty((resolution, resolution, 3), dtype=np.uint8)
    rows = np.arange(resolution) + 0.5
    top = rows < scene.split
    image[top] = PALETTE[scene.background[0]]
    image[~top] = PALETTE[scene.background[-1]]
    for shape in scene.shapes:
        image[shape_mask(shape.kind, shape.center, shape.size, resolution)] = PALETTE[shape.colour]
    return image


def random_scene(
    rng: np.random.Generator,
    resolution: int,
    num_shapes: int | None = None,
    two_bands: bool | None = None,
    size_range: tuple[float, float] = SHAPE_SIZE_RANGE,
) -> Scene:
    """A random scene following the world's rules; ``None`` arguments are drawn at random. ``size_range``: the
    shapes' sides as fractions of the image side (a training run may draw from a wider range than the world's)."""
    if two_bands is None:
        two_bands = bool(rng.random() < 0.5)
    if num_shapes is None:
        num_shapes = int(rng.integers(1, 3))
    if two_bands:
        background = tuple(str(c) for c in rng.choice(COLOURS, size=2, replace=False))
        split = float(rng.uniform(*BAND_SPLIT_RANGE) * resolution)
    else:
        background = (str(rng.choice(COLOURS)),)
        split = float(resolution)
    allowed = [c for c in COLOURS if c not in background]
    shapes = []
    for _ in range(num_shapes):
        size = float(rng.uniform(*size_range) * resolution)
        center = tuple(float(v) for v in rng.uniform(size / 2, resolution - size / 2, size=2))
        shapes.append(Shape(str(rng.choice(SHAPES)), str(rng.choice(allowed)), center, size))
    return Scene(background, split, tuple(shapes))


def random_box(
    rng: np.random.Generator, resolution: int, fraction_range: tuple[float, float] = (0.5, 0.6)
) -> tuple[int, int, int, int]:
    """A square box (left, top, right, bottom) whose side is a fraction of the image side."""
    side = int(round(rng.uniform(*fraction_range) * resolution))
    left, top = (int(v) for v in rng.integers(0, resolution - side + 1, size=2))
    return left, top, left + side, top + side


def box_mask(box: tuple[int, int, int, int], resolution: int) -> np.ndarray:
    """Boolean (resolution, resolution) mask of a box."""
    mask = np.zeros((resolution, resolution), dtype=bool)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = True
    return mask


VOCABULARY: tuple[str, ...] = ("a", "and", "on", "background", *COLOURS, *SHAPES)
SHAPE_PROMPTS: tuple[str, ...] = tuple(f"a {c} {s}" for c in COLOURS for s in SHAPES)
