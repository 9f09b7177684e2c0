"""A referee for edits in the shapes world that looks at pixels only (never CLIP).

"a {colour} {shape}": the masked region must hold a connected blob of pixels near the asked palette colour,
big enough to be an object, whose silhouette is classified as the asked shape: a square fills its bounding box,
a circle fills about pi/4 of it, an upright triangle about half and is much narrower at the top than the bottom.
"a {colour} background": at least ``background_fraction`` of the masked pixels are the asked colour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from blended_pipeline.shapes.world import COLOURS, PALETTE_RGB, SHAPES

COLOUR_TOLERANCE = 90  # largest L1 distance (0-765) to count a pixel as a palette colour
MIN_EXTENT = 0.4  # the blob's longest side, as a fraction of the mask box's side
MIN_AREA_FRACTION = 0.02  # of the whole image


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    shape: str | None = None


def parse_prompt(prompt: str) -> tuple[str, str]:
    """("red", "circle") or ("red", "background"); ValueError for anything else."""
    match = re.fullmatch(r"\s*an? (\w+) (\w+)\s*", prompt.lower())
    if not match or match[1] not in COLOURS or match[2] not in (*SHAPES, "background"):
        raise ValueError(
            f"the judge understands 'a {{colour}} {{shape}}' and 'a {{colour}} background', got {prompt!r}"
        )
    return match[1], match[2]


def colour_labels(image: np.ndarray) -> np.ndarray:
    """(H, W) index of the nearest palette colour, or -1 where none is within ``COLOUR_TOLERANCE``."""
    distance = np.abs(image[:, :, None, :].astype(np.int32) - PALETTE_RGB[None, None].astype(np.int32)).sum(-1)
    labels = distance.argmin(-1)
    labels[distance.min(-1) > COLOUR_TOLERANCE] = -1
    return labels


def judge(image: np.ndarray, mask: np.ndarray, prompt: str, background_fraction: float = 0.6) -> Verdict:
    """Whether the (H, W, 3) uint8 ``image`` does what ``prompt`` asks inside the (H, W) bool ``mask``."""
    colour, what = parse_prompt(prompt)
    asked = (colour_labels(image) == COLOURS.index(colour)) & mask
    if what == "background":
        fraction = asked.sum() / max(1, mask.sum())
        return Verdict(fraction >= background_fraction, f"{fraction:.0%} of the masked pixels are {colour}")
    blob = largest_component(asked)
    if blob is None:
        return Verdict(False, f"no {colour} pixels in the mask")
    rows, cols = np.nonzero(mask)
    box_side = max(np.ptp(rows), np.ptp(cols)) + 1
    ys, xs = np.nonzero(blob)
    extent = max(np.ptp(ys), np.ptp(xs)) + 1
    if extent < MIN_EXTENT * box_side or blob.sum() < MIN_AREA_FRACTION * blob.size:
        return Verdict(False, f"the {colour} blob is too small ({blob.sum()} pixels, {extent} across)")
    shape = classify_shape(blob)
    return Verdict(shape == what, f"a {colour} blob shaped like a {shape}", shape)


def classify_shape(blob: np.ndarray) -> str:
    """Circle, square or triangle, from how much of its bounding box the blob fills and how it tapers."""
    ys, xs = np.nonzero(blob)
    crop = blob[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    height, width = crop.shape
    fill = crop.mean()
    quarter = max(1, height // 4)
    taper = crop[:quarter].sum(1).mean() / max(1e-6, crop[-quarter:].sum(1).mean())
    aspect = height / width
    if taper < 0.6 and fill < 0.7:
        return "triangle"
    if fill > 0.9 and 0.7 < aspect < 1.4:
        return "square"
    if 0.6 < fill <= 0.9 and 0.7 < aspect < 1.4:
        return "circle"
    return "irregular"


def largest_component(pixels: np.ndarray) -> np.ndarray | None:
    """The largest 4-connected component of a bool image, or None if it is empty."""
    labels = np.zeros(pixels.shape, dtype=np.int32)
    best, best_size, current = 0, 0, 0
    height, width = pixels.shape
    for start in zip(*np.nonzero(pixels), strict=True):
        if labels[start]:
            continue
        current += 1
        labels[start] = current
        stack, size = [start], 0
        while stack:
            y, x = stack.pop()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and pixels[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    stack.append((ny, nx))
        if size > best_size:
            best, best_size = current, size
    return labels == best if best else None


def judge_scene(image: np.ndarray) -> Verdict:
    """Whether an (S, S, 3) uint8 image is a valid scene of the world (used on unconditional samples).

    Rules: nearly every pixel is a palette colour; the background is one colour, or two horizontal bands
    (the commonest colours of the top and bottom 35%) split between 35% and 65% of the height; the pixels of
    each other colour form objects (specks of two pixels or fewer are ignored); there are one or two objects,
    each 20-55% of the side, at least one a clean circle, square or triangle (the other may be partly hidden).
    """
    size = image.shape[0]
    labels = colour_labels(image)
    if (labels >= 0).mean() < 0.9:
        return Verdict(False, f"only {(labels >= 0).mean():.0%} of the pixels are palette colours")
    band = int(0.35 * size)
    top, bottom = (
        np.bincount(part[part >= 0], minlength=len(COLOURS)).argmax() for part in (labels[:band], labels[-band:])
    )
    splits = range(band, size - band + 1)
    fit = [(labels[:s] == top).sum() + (labels[s:] == bottom).sum() for s in splits]
    split = splits[int(np.argmax(fit))]
    background = np.where(np.arange(size)[:, None] < split, top, bottom)
    if (labels == background).mean() < 0.4:
        return Verdict(False, "the background is neither one colour nor two horizontal bands")
    components = []
    for colour in np.unique(labels[(labels != background) & (labels >= 0)]):
        remaining = (labels == colour) & (labels != background)
        while (blob := largest_component(remaining)) is not None:
            remaining &= ~blob
            if blob.sum() > 2:
                components.append(blob)
    if not 1 <= len(components) <= 2:
        return Verdict(False, f"{len(components)} objects instead of one or two")
    extents = [max(np.ptp(np.nonzero(c)[0]), np.ptp(np.nonzero(c)[1])) + 1 for c in components]
    if not all(0.2 * size <= e <= 0.55 * size for e in extents):
        return Verdict(False, f"objects {extents} pixels across, not 20-55% of {size}")
    shapes = [classify_shape(c) for c in components]
    if not any(s in SHAPES for s in shapes):
        return Verdict(False, f"no clean shape among {shapes}")
    return Verdict(True, f"objects: {shapes}")
