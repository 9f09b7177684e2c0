"""Blending as a step-end callback: the heart of Blended Diffusion.

After every denoising step the sample keeps its own pixels inside the mask and takes, outside it, the input
image noised to the sample's new noise level. The next step then projects the mixed sample back onto the
manifold of noisy images, which is what repairs the seam. The pipeline hands each callback ``noised_image``
(the input at the level of the sample after this step; the clean input after the last step), so a blending
callback never needs to know about schedulers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers.callbacks import PipelineCallback


class BlendCallback(PipelineCallback):
    """``x_{t-1} = x_{t-1, fg} * m + x_{t-1, bg} * (1 - m)`` after every step (Algorithm 2)."""

    tensor_inputs = ["latents", "noised_image", "mask"]

    def __init__(self) -> None:
        super().__init__(cutoff_step_ratio=1.0)

    def mask_at(self, mask: torch.Tensor, step_index: int, num_steps: int) -> torch.Tensor:
        """The mask to blend with at this step; subclasses change it over the steps."""
        return mask

    def callback_fn(
        self, pipeline: Any, step_index: int, timestep: int, callback_kwargs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        mask = self.mask_at(callback_kwargs["mask"], step_index, pipeline.num_timesteps)
        latents = callback_kwargs["latents"]
        callback_kwargs["latents"] = latents * mask + callback_kwargs["noised_image"] * (1 - mask)
        return callback_kwargs


class ProgressiveDilationBlendCallback(BlendCallback):
    """Blend with a mask dilated by ``max_dilation`` pixels at the first step, shrinking to the real mask.

    Thin or small masks give the model little room at high noise; a wider region early (as in Blended Latent
    Diffusion) lets the object form, and the final steps and paste still keep everything outside the mask.
    """

    def __init__(self, max_dilation: int = 4, shrink_until: float = 0.5) -> None:
        if max_dilation < 0:
            raise ValueError(f"max_dilation must be >= 0 pixels, got {max_dilation}")
        if not 0 < shrink_until <= 1:
            raise ValueError(f"shrink_until must be in (0, 1], got {shrink_until}")
        super().__init__()
        self.max_dilation = max_dilation
        self.shrink_until = shrink_until

    def mask_at(self, mask: torch.Tensor, step_index: int, num_steps: int) -> torch.Tensor:
        remaining = max(0.0, 1 - step_index / max(1, num_steps * self.shrink_until))
        radius = round(self.max_dilation * remaining)
        if radius == 0:
            return mask
        return F.max_pool2d(mask, kernel_size=2 * radius + 1, stride=1, padding=radius)


class ShrinkingMaskBlendCallback(BlendCallback):
    """Blended Latent Diffusion's progressive mask shrinking: blend with the mask dilated by each of ``radii``
    cells in turn, each for an equal part of the run (default 3, 2, 1, 0: kernels 7, 5, 3, 1 on the latent mask).

    A thin mask covers few latent cells, too few for the object to form at high noise; the wider early masks
    give it room, and the last part of the run (radius 0) and the final paste keep everything outside the mask.
    """

    def __init__(self, radii: tuple[int, ...] = (3, 2, 1, 0)) -> None:
        if not radii or any(r < 0 for r in radii):
            raise ValueError(f"radii must be one or more non-negative cell counts, got {radii}")
        super().__init__()
        self.radii = tuple(radii)

    def radius_at(self, step_index: int, num_steps: int) -> int:
        return self.radii[min(len(self.radii) - 1, step_index * len(self.radii) // max(1, num_steps))]

    def mask_at(self, mask: torch.Tensor, step_index: int, num_steps: int) -> torch.Tensor:
        radius = self.radius_at(step_index, num_steps)
        if radius == 0:
            return mask
        return F.max_pool2d(mask, kernel_size=2 * radius + 1, stride=1, padding=radius)
