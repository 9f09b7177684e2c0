"""Inputs for the paper's applications, prepared before the pipeline runs (the pipeline itself is unchanged).

- Background replacement: ``invert_mask`` of an object's mask; the prompt describes the new background.
- Scribble-guided editing: ``apply_scribble`` pastes the user's strokes into the image and, when no mask is
  given, masks the strokes' area (dilated); run at the checkpoint's lower ``pipe.config.scribble_strength`` so
  their colours and layout survive.
- Text-guided extrapolation: ``extend_canvas`` places the image on a larger canvas and masks the new area.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageFilter

from blended_pipeline.settings import CANVAS_FILLS, check_extension

BACKGROUND_STRENGTH = 1.0  # a new background recolours most of the image: at 0.75 the old colours survive
SCRIBBLE_DILATION = 2  # pixels added around the strokes when they make the mask
APPLICATIONS = ("edit", "background", "scribble", "extend")
"""edit the masked region; replace the background (the mask inverted); shape scribbled strokes; extend the canvas."""


def application_strength(application: str, checkpoint: Any) -> float:
    """The strength an application runs at when none is asked for: the checkpoint's ``scribble_strength`` for
    scribbles (their colours must survive), 1.0 for a new background, else the checkpoint's ``default_strength``."""
    if application == "scribble":
        return checkpoint.scribble_strength
    return BACKGROUND_STRENGTH if application == "background" else checkpoint.default_strength


def invert_mask(mask: PIL.Image.Image) -> PIL.Image.Image:
    """White where the mask was black: edit everything except the masked object."""
    return PIL.Image.fromarray(255 - _binary(mask).astype(np.uint8) * 255)


def apply_scribble(
    image: PIL.Image.Image, scribble: PIL.Image.Image, dilation: int = SCRIBBLE_DILATION
) -> tuple[PIL.Image.Image, PIL.Image.Image]:
    """The image with the strokes pasted in, and the strokes' area dilated by ``dilation`` pixels as a mask.

    ``scribble`` has the image's size; its strokes are its opaque pixels (RGBA) or the pixels that differ from
    the image (RGB).
    """
    if scribble.size != image.size:
        raise ValueError(
            f"the scribble is {scribble.size[0]}x{scribble.size[1]}, the image "
            f"{image.size[0]}x{image.size[1]}: they must have the same size"
        )
    base = np.asarray(image.convert("RGB"))
    if scribble.mode in ("RGBA", "LA"):
        strokes = np.asarray(scribble.getchannel("A")) > 127
    else:
        strokes = np.any(np.asarray(scribble.convert("RGB")) != base, axis=-1)
    if not strokes.any():
        raise ValueError("the scribble has no strokes: no opaque pixel (RGBA) and none that differs from the image")
    painted = base.copy()
    painted[strokes] = np.asarray(scribble.convert("RGB"))[strokes]
    mask = PIL.Image.fromarray(strokes.astype(np.uint8) * 255)
    if dilation > 0:
        mask = mask.filter(PIL.ImageFilter.MaxFilter(2 * dilation + 1))
    return PIL.Image.fromarray(painted), mask


def extend_canvas(
    image: PIL.Image.Image, left: int, top: int, right: int, bottom: int, fill: str = "edge", seed: int = 0
) -> tuple[PIL.Image.Image, PIL.Image.Image]:
    """The image on a canvas larger by the given pixels, and a mask of the new area.

    ``fill`` says what the new area holds before it is noised: "edge" repeats the image's edge pixels outward,
    "mirror" reflects the image across its edge and blurs the reflection, "noise" is uniform random colour
    (from ``seed``). The first two carry the colours next to the seam into the new area.
    """
    if fill not in CANVAS_FILLS:
        raise ValueError(f"fill must be one of {CANVAS_FILLS}, got {fill!r}")
    if min(left, top, right, bottom) < 0 or left + top + right + bottom == 0:
        raise ValueError(f"extend by non-negative pixels, at least one positive; got {left},{top},{right},{bottom}")
    check_extension(*image.size, left, top, right, bottom, "extend")
    array = np.asarray(image.convert("RGB"))
    padding = ((top, bottom), (left, right), (0, 0))
    inside = (slice(top, top + array.shape[0]), slice(left, left + array.shape[1]))
    if fill == "edge":
        canvas = np.pad(array, padding, mode="edge")
    elif fill == "mirror":
        mirrored = PIL.Image.fromarray(np.pad(array, padding, mode="symmetric"))
        canvas = np.array(mirrored.filter(PIL.ImageFilter.GaussianBlur(max(1, max(left, top, right, bottom) / 4))))
        canvas[inside] = array
    else:
        shape = (array.shape[0] + top + bottom, array.shape[1] + left + right, 3)
        canvas = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
        canvas[inside] = array
    mask = np.ones(canvas.shape[:2], dtype=np.uint8) * 255
    mask[inside] = 0
    return PIL.Image.fromarray(canvas), PIL.Image.fromarray(mask)


def _binary(mask: PIL.Image.Image) -> np.ndarray:
    return np.asarray(mask.convert("L")) > 127
