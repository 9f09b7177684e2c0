"""Background reconstruction for latent editing (Blended Latent Diffusion, section 4.3).

A VAE's decoder does not give back the input outside the mask exactly, so pasting the input there leaves a
seam where decoded and input pixels meet. Fitting a copy of the decoder, per result, to decode the edited
latents into the input outside the mask (and into its own first decoding inside) shrinks that seam; the
pipeline's decoder is never changed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

RECONSTRUCTION_STEPS = 75
RECONSTRUCTION_LR = 1e-4
OUTSIDE_WEIGHT = 100.0


@dataclass
class Reconstruction:
    """The decoded image (1, 3, H, W) in [-1, 1] and the fitting loss at each step."""

    image: torch.Tensor
    losses: list[float]


def fit_decoder(
    vae: AutoencoderKL,
    latents: torch.Tensor,
    source: torch.Tensor,
    mask: torch.Tensor,
    steps: int = RECONSTRUCTION_STEPS,
    lr: float = RECONSTRUCTION_LR,
    outside_weight: float = OUTSIDE_WEIGHT,
) -> Reconstruction:
    """Decode one result's ``latents`` (1, C, h, w, already divided by the scaling factor) with a copy of the
    decoder fitted for ``steps`` Adam steps to ``MSE(inside, first decoding) + outside_weight * MSE(outside,
    source)``; ``source`` (1, 3, H, W) in [-1, 1], ``mask`` (1, 1, H, W) in [0, 1], 1 = edited."""
    post_quant = copy.deepcopy(vae.post_quant_conv) if vae.post_quant_conv is not None else torch.nn.Identity()
    decoder = copy.deepcopy(vae.decoder)
    parameters = [*decoder.parameters(), *post_quant.parameters()]
    with torch.enable_grad():
        for parameter in parameters:
            parameter.requires_grad_(True)
        with torch.no_grad():
            first = decoder(post_quant(latents)).float()
        optimizer = torch.optim.Adam(parameters, lr=lr)
        losses = []
        for _ in range(steps):
            decoded = decoder(post_quant(latents)).float()
            loss = F.mse_loss(decoded * mask, first * mask) + outside_weight * F.mse_loss(
                decoded * (1 - mask), source * (1 - mask)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    with torch.no_grad():
        return Reconstruction(decoder(post_quant(latents)).float(), losses)
