"""Guidance objectives: what the sampler's gradient pushes towards.

The pipeline asks an objective two things: a loss on a batch of images (lower is better, differentiable, used to
guide) and a score (higher is better, used to rank). Any object with ``prepare``, ``loss`` and ``score`` can
replace the CLIP objective (see ``GuidanceObjective``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from transformers import CLIPImageProcessor, CLIPModel, PreTrainedTokenizerBase


class GuidanceObjective(Protocol):
    def prepare(self, prompt: str, device: torch.device) -> Any:
        """Whatever ``loss`` and ``score`` need about the prompt, computed once per call."""

    def loss(self, images: torch.Tensor, target: Any) -> torch.Tensor:
        """(N,) losses for (N, 3, H, W) images in [-1, 1]; lower is a better match."""

    def score(self, images: torch.Tensor, target: Any) -> torch.Tensor:
        """(N,) scores; higher is a better match."""


@dataclass
class TokenizedPrompt:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


class CLIPGuidance:
    """``D_CLIP`` of Blended Diffusion: CLIP's spherical distance between an image and the prompt.

    Images are resized to CLIP's resolution and normalised with the feature extractor's mean and std. CLIP is
    called through its ``forward`` (not ``get_image_features``) so that accelerate's offload hooks fire.
    """

    def __init__(
        self, clip_model: CLIPModel, tokenizer: PreTrainedTokenizerBase, feature_extractor: CLIPImageProcessor
    ) -> None:
        self.clip_model = clip_model
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor

    def prepare(self, prompt: str, device: torch.device) -> TokenizedPrompt:
        tokens = self.tokenizer(
            [prompt], padding="max_length", truncation=True, max_length=self._max_length(), return_tensors="pt"
        )
        return TokenizedPrompt(tokens.input_ids.to(device), tokens.attention_mask.to(device))

    def loss(self, images: torch.Tensor, target: TokenizedPrompt) -> torch.Tensor:
        image_embeds, text_embeds = self._embed(images, target)
        return spherical_distance(image_embeds, text_embeds)

    def score(self, images: torch.Tensor, target: TokenizedPrompt) -> torch.Tensor:
        image_embeds, text_embeds = self._embed(images, target)
        return (image_embeds * text_embeds).sum(dim=-1)

    def _embed(self, images: torch.Tensor, target: TokenizedPrompt) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = clip_pixel_values(images, self.feature_extractor).to(self.clip_model.dtype)
        output = self.clip_model(input_ids=target.input_ids, attention_mask=target.attention_mask, pixel_values=pixels)
        return output.image_embeds.float(), output.text_embeds.float()

    def _max_length(self) -> int:
        return min(self.tokenizer.model_max_length, self.clip_model.config.text_config.max_position_embeddings)


def clip_pixel_values(images: torch.Tensor, feature_extractor: CLIPImageProcessor) -> torch.Tensor:
    """(N, 3, H, W) images in [-1, 1] -> what CLIP's vision tower expects, differentiably."""
    size = feature_extractor.crop_size if feature_extractor.do_center_crop else feature_extractor.size
    height, width = size.get("height", size.get("shortest_edge")), size.get("width", size.get("shortest_edge"))
    if images.shape[-2:] != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(feature_extractor.image_mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(feature_extractor.image_std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return ((images + 1) / 2 - mean) / std


def spherical_distance(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``2 * arcsin(|u - v| / 2) ** 2`` for unit vectors: the authors' form of the cosine distance."""
    return (u - v).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)


def range_loss(images: torch.Tensor) -> torch.Tensor:
    """(N,) penalty on values outside [-1, 1], which CLIP guidance otherwise pushes towards."""
    return (images - images.clamp(-1, 1)).pow(2).mean(dim=(1, 2, 3))


class BackgroundPreservationLoss:
    """``D_bg`` of Algorithm 1: ``0.5 * (MSE + LPIPS)`` between two images outside the mask."""

    def __init__(self, lpips_model: torch.nn.Module) -> None:
        self.lpips_model = lpips_model

    @classmethod
    def pretrained(cls, net: str = "alex") -> BackgroundPreservationLoss:
        """LPIPS with torchvision's ImageNet backbone; says where the backbone file goes when it is missing."""
        import lpips

        hub_file = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}.get(net, f"{net} weights")
        try:
            model = lpips.LPIPS(net=net, verbose=False)
        except Exception as error:  # torchvision raises URLError, HTTPError or RuntimeError when offline
            place = Path(torch.hub.get_dir()) / "checkpoints" / hub_file
            raise RuntimeError(
                f"LPIPS needs torchvision's pretrained {net} backbone, which could not be loaded ({error}). "
                f"Download {hub_file} from download.pytorch.org/models/ and put it at {place}, "
                "or pass BackgroundPreservationLoss(lpips.LPIPS(net=..., pnet_rand=True)) for a random backbone."
            ) from error
        return cls(model.eval().requires_grad_(False))

    def __call__(self, source: torch.Tensor, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = 1 - mask
        source, images = source * keep, images * keep
        mse = (source - images).pow(2).mean(dim=(1, 2, 3))
        if min(images.shape[-2:]) < 64:  # AlexNet/VGG features vanish below 64 pixels
            source = F.interpolate(source, size=(64, 64), mode="bilinear", align_corners=False)
            images = F.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False)
        self.lpips_model.to(images.device)
        perceptual = self.lpips_model(source.expand_as(images), images).flatten()
        return 0.5 * (mse + perceptual)
