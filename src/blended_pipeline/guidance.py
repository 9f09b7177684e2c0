"""Guidance, in one place: what the sampler's gradient pushes towards, and how the gradient moves a step.

Three pieces, each usable without a pipeline:
- ``Guidance``: judges images against prompts; a loss (lower is better, differentiable) to guide with and a score
  (higher is better) to rank with. ``CLIPGuidance`` is the paper's ``D_CLIP``; any object with ``prepare``,
  ``loss`` and ``score`` replaces it.
- ``GuidanceLoss``: the loss of one call, built from its arguments: the guidance on augmented views of the
  masked ``x0_hat``, the range penalty and, for Algorithm 1, the background loss.
- ``guided_noise_prediction``: a model's noise prediction shifted along the loss's gradient, so that any
  epsilon-based scheduler step moves down the loss (guided-diffusion's ``condition_score``, for a loss).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from transformers import CLIPImageProcessor, CLIPModel, PreTrainedTokenizerBase

from blended_pipeline.augment import Augmentation, Generators, crop_to_mask
from blended_pipeline.settings import ClipInput, ClipView, InputWarning

BackgroundLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(source, images, mask) -> (N,)`` losses: how far ``images`` strayed from ``source`` where ``mask`` is 0."""


class Guidance(Protocol):
    """Judges images against prompts. Rows of a batch are matched to prompts cyclically: with N prompts, image
    row ``j`` is judged against prompt ``j % N`` (so ``k`` augmented views of N images, view-major, line up)."""

    def prepare(self, prompts: Sequence[str], device: torch.device) -> Any:
        """Whatever ``loss`` and ``score`` need about the prompts (one per result), computed once per call."""

    def loss(self, images: torch.Tensor, target: Any) -> torch.Tensor:
        """(M,) losses for (M, 3, H, W) images in [-1, 1]; lower is a better match."""

    def score(self, images: torch.Tensor, target: Any) -> torch.Tensor:
        """(M,) scores; higher is a better match."""


@dataclass
class TokenizedPrompts:
    """The distinct prompts, tokenized, and for each result the row of its prompt."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    rows: torch.Tensor


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

    def prepare(self, prompts: Sequence[str], device: torch.device) -> TokenizedPrompts:
        distinct = list(dict.fromkeys(prompts))
        for prompt in distinct:
            self._warn_if_cut(prompt)
        tokens = self.tokenizer(
            distinct, padding="max_length", truncation=True, max_length=self._max_length(), return_tensors="pt"
        )
        rows = torch.tensor([distinct.index(prompt) for prompt in prompts], device=device)
        return TokenizedPrompts(tokens.input_ids.to(device), tokens.attention_mask.to(device), rows)

    def loss(self, images: torch.Tensor, target: TokenizedPrompts) -> torch.Tensor:
        image_embeds, text_embeds = self._embed(images, target)
        return spherical_distance(image_embeds, text_embeds)

    def score(self, images: torch.Tensor, target: TokenizedPrompts) -> torch.Tensor:
        image_embeds, text_embeds = self._embed(images, target)
        return (image_embeds * text_embeds).sum(dim=-1)

    def _embed(self, images: torch.Tensor, target: TokenizedPrompts) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit image embeddings, and for each image the unit embedding of its prompt."""
        pixels = clip_pixel_values(images, self.feature_extractor).to(self.clip_model.dtype)
        output = self.clip_model(input_ids=target.input_ids, attention_mask=target.attention_mask, pixel_values=pixels)
        rows = target.rows.repeat(images.shape[0] // target.rows.shape[0])
        return output.image_embeds.float(), output.text_embeds.float()[rows]

    def _warn_if_cut(self, prompt: str) -> None:
        """CLIP reads a fixed number of tokens: name the words a longer prompt loses."""
        ids = self.tokenizer(prompt, truncation=False, verbose=False).input_ids
        kept = self._max_length() - 1  # the last place holds the end-of-text token
        if len(ids) > kept + 1:
            dropped = self.tokenizer.decode(ids[kept:-1], skip_special_tokens=True).split()
            shown = " ".join(dropped[:8]) + (f" ... ({len(dropped)} words)" if len(dropped) > 8 else "")
            warnings.warn(
                f"prompt is longer than CLIP's {self._max_length()} tokens; dropped: {shown!r}",
                InputWarning,
                stacklevel=4,
            )

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


def mse_outside(source: torch.Tensor, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) mean squared error outside the mask: ``D_bg`` without LPIPS, which needs no downloaded weights."""
    return ((source - images) * (1 - mask)).pow(2).mean(dim=(1, 2, 3))


@dataclass
class GuidanceLoss:
    """The loss whose gradient guides one call (Algorithm 2's line 5; Algorithm 1 adds ``D_bg``).

    ``clip_guidance_scale`` times the guidance loss averaged over ``num_augmentations`` views of the masked
    ``x0_hat``, plus ``range_loss_scale`` times the range penalty, plus ``background_loss_scale`` times
    ``background_loss(source, x0_hat, mask)``. Summed over results, so each result's gradient is its own.
    ``clip_input="mixed"`` judges ``x0_hat * sqrt(1 - abar) + x_t * (1 - sqrt(1 - abar))`` (the authors' code).
    ``clip_view="crop"`` enlarges the square around the mask to the whole view before the augmentations, so that
    a small region is as large in CLIP's view as any object (``augment.crop_to_mask``).
    ``guidance_area_reference`` scales each result's CLIP weight by that area over its mask's (both fractions of
    the image).
    """

    guidance: Guidance
    target: Any
    mask: torch.Tensor
    augmentation: Augmentation
    num_augmentations: int
    clip_guidance_scale: float
    range_loss_scale: float
    clip_input: ClipInput = "x0_hat"
    clip_view: ClipView = "masked"
    guidance_area_reference: float | None = None
    background_loss: BackgroundLoss | None = None
    background_loss_scale: float = 0.0
    source: torch.Tensor | None = None
    generator: Generators = None

    def __call__(self, x0_hat: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        judged = x0_hat
        if self.clip_input == "mixed":
            judged = x0_hat * (1 - alpha_bar).sqrt() + x_t * (1 - (1 - alpha_bar).sqrt())
        masked = judged * self.mask
        if self.clip_view == "crop":
            masked = crop_to_mask(masked, self.mask)
        views = self.augmentation(masked, self.num_augmentations, self.generator)
        guidance_loss = self.guidance.loss(views, self.target).view(self.num_augmentations, -1).mean(dim=0)
        loss = self.clip_weights() * guidance_loss + self.range_loss_scale * range_loss(x0_hat)
        if self.background_loss is not None and self.background_loss_scale > 0:
            loss = loss + self.background_loss_scale * self.background_loss(self.source, x0_hat, self.mask)
        return loss.sum()

    def clip_weights(self) -> float | torch.Tensor:
        """The CLIP term's weight: the guidance scale, or with an area reference one weight per result."""
        if self.guidance_area_reference is None:
            return self.clip_guidance_scale
        area = self.mask.float().mean(dim=(1, 2, 3)).clamp(min=1 / self.mask[0].numel())
        return self.clip_guidance_scale * self.guidance_area_reference / area


def guided_noise_prediction(
    model: Callable[[torch.Tensor], torch.Tensor],
    sample: torch.Tensor,
    alpha_bar: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None,
    backprop_through_model: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's output with its noise shifted by ``+sqrt(1 - abar) * grad_{x_t} loss``, and ``x0_hat``.

    ``x0_hat = (x_t - sqrt(1 - abar) * eps) / sqrt(abar)``. The shifted noise moves any epsilon-based step (DDPM's
    mean, DDIM's update) down the loss and needs nothing of the scheduler but ``abar``. Channels beyond the
    sample's (a learned variance) are passed through. ``backprop_through_model=False`` treats the model's output
    as constant: no backward pass through the model (cheaper, less faithful). ``loss=None`` (an unguided step):
    the model's output as it is, from one forward pass.
    """
    channels = sample.shape[1]
    if loss is None:
        output = model(sample).float()
        x0_hat = (sample - (1 - alpha_bar).sqrt() * output[:, :channels]) / alpha_bar.sqrt()
        return output, x0_hat
    with torch.enable_grad():
        x_t = sample.detach().requires_grad_(True)
        with nullcontext() if backprop_through_model else torch.no_grad():
            output = model(x_t if backprop_through_model else x_t.detach()).float()
        noise = output[:, :channels]
        x0_hat = (x_t - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()
        gradient = torch.autograd.grad(loss(x0_hat, x_t, alpha_bar), x_t)[0]
    guided_noise = noise.detach() + (1 - alpha_bar).sqrt() * gradient
    return torch.cat([guided_noise, output[:, channels:].detach()], dim=1), x0_hat.detach()


def is_guided_step(step: int, steps: int, every: int = 1, end: float = 1.0) -> bool:
    """Whether step ``step`` (0-based) of the ``steps`` run takes the guidance gradient: every ``every``-th step,
    the first included, among the first ``end`` fraction of them (rounded up, so at least one step is guided)."""
    return step % every == 0 and step < math.ceil(end * steps)


@contextmanager
def gradients_for_samples_only(*modules: torch.nn.Module | None) -> Iterator[None]:
    """The modules' parameters stop requiring gradients for the duration, and get their flags back after.

    The guidance needs ``d loss / d x_t`` only. A parameter that requires a gradient makes autograd record each
    layer for a weight gradient that nobody reads: on a CPU, CLIP ViT-B/16's backward pass over 16 views took
    about a fifth longer (``benchmarks/profile_step.py``). The models are not changed for the caller.
    """
    parameters = [p for module in modules if module is not None for p in module.parameters() if p.requires_grad]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in parameters:
            parameter.requires_grad_(True)
