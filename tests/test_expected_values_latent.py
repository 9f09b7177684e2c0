"""Pinned outputs of the tiny latent pipeline: a few pixels and the scores, for each option that changes the math.

Exact backgrounds come from the final paste whatever the sampler did, so only pinned values catch a wrong
classifier-free guidance, latent mask, noise level or reconstruction. The values were produced by this file:

    HF_HUB_OFFLINE=1 .venv/bin/python tests/test_expected_values_latent.py

prints ``EXPECTED`` for the current code. Replace the table with its output only when a change is meant to change
the numbers, and say which in the commit; a refactor must leave them as they are.
"""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_latent_pipeline
from test_expected_values import assert_pinned, inputs, print_expected

VARIANTS: dict[str, dict] = {
    "ddim": {},
    "no guidance": {"guidance_scale": 1.0},
    "nearest latent mask": {"latent_mask": "nearest"},
    "negative prompt": {"negative_prompt": "a blue square"},
    "border weight": {"rank_border_weight": 0.5},
    "decoder reconstruction": {"reconstruction": "decoder"},
}

EXPECTED: dict[str, dict[str, list[float]]] = {
    "ddim": {
        "pixels": [
            0.63547,
            0.64179,
            0.0,
            0.54352,
            0.78155,
            0.37426,
            0.25833,
            0.71796,
            0.20958,
            0.58575,
            0.56944,
            0.22991,
            0.30463,
            0.39387,
            0.15085,
            0.5125,
            0.60677,
            0.37963,
            0.29366,
            0.70204,
            0.33491,
            0.72874,
            0.29379,
            0.4996,
        ],
        "scores": [-1.04582, -1.09564],
    },
    "no guidance": {
        "pixels": [
            0.79506,
            0.54701,
            0.0052,
            0.55191,
            0.61939,
            0.32173,
            0.27782,
            0.68164,
            0.31377,
            0.64327,
            0.43041,
            0.22492,
            0.2238,
            0.49932,
            0.08008,
            0.5664,
            0.67916,
            0.45786,
            0.36539,
            0.7213,
            0.32722,
            0.59266,
            0.41911,
            0.50926,
        ],
        "scores": [-1.04079, -1.0824],
    },
    "nearest latent mask": {
        "pixels": [
            0.63547,
            0.64179,
            0.0,
            0.54352,
            0.78155,
            0.37426,
            0.25833,
            0.71796,
            0.20958,
            0.58575,
            0.56944,
            0.22991,
            0.30463,
            0.39387,
            0.15085,
            0.5125,
            0.60677,
            0.37963,
            0.29366,
            0.70204,
            0.33491,
            0.72874,
            0.29379,
            0.4996,
        ],
        "scores": [-1.04582, -1.09564],
    },
    "negative prompt": {
        "pixels": [
            0.83572,
            0.67141,
            0.08299,
            0.51676,
            0.7004,
            0.36873,
            0.25491,
            0.64227,
            0.32263,
            0.74013,
            0.36233,
            0.25675,
            0.27404,
            0.53266,
            0.0724,
            0.4581,
            0.67315,
            0.446,
            0.28181,
            0.76474,
            0.38795,
            0.54402,
            0.42556,
            0.33924,
        ],
        "scores": [-1.042, -1.07767],
    },
    "border weight": {
        "pixels": [
            0.63547,
            0.64179,
            0.0,
            0.54352,
            0.78155,
            0.37426,
            0.25833,
            0.71796,
            0.20958,
            0.58575,
            0.56944,
            0.22991,
            0.30463,
            0.39387,
            0.15085,
            0.5125,
            0.60677,
            0.37963,
            0.29366,
            0.70204,
            0.33491,
            0.72874,
            0.29379,
            0.4996,
        ],
        "scores": [-1.58768, -1.71686],
    },
    "decoder reconstruction": {
        "pixels": [
            0.35409,
            0.25835,
            0.05774,
            0.51486,
            0.54031,
            0.37624,
            0.38703,
            0.74689,
            0.53002,
            0.71611,
            0.54763,
            0.14464,
            0.15816,
            0.58612,
            0.11371,
            0.74104,
            0.88656,
            0.44353,
            0.4265,
            0.73315,
            0.35344,
            0.54505,
            0.27856,
            0.42292,
        ],
        "scores": [-1.03166, -1.07427],
    },
}


def run(variant: str) -> dict[str, list[float]]:
    """Four pixels of each result inside the mask, all channels, and the scores."""
    image, mask = inputs()
    out = tiny_latent_pipeline()(
        "a red ball",
        image,
        mask,
        num_inference_steps=8,
        num_images_per_prompt=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        **VARIANTS[variant],
    )
    pixels = out.images[:, 8:16:2, 18, :]
    return {"pixels": [round(float(v), 5) for v in pixels.flatten()], "scores": [round(s, 5) for s in out.scores]}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_expected_values(variant):
    assert_pinned(run(variant), EXPECTED[variant])


if __name__ == "__main__":
    print_expected(run, VARIANTS)
