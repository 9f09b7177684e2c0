"""``BlendedLatentDiffusionXLPipeline``: blended latent editing on Stable Diffusion XL checkpoints.

Only the prompt's conditioning differs from Stable Diffusion 1.x/2.x: two text encoders (the penultimate hidden
states of both, side by side; the second's projected pooled output), and the added time ids that tell the UNet
the image's size and crop. The loop, the region, blending, ranking and the paste are the latent pipeline's.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.schedulers import SchedulerMixin
from transformers import (
    CLIPImageProcessor,
    CLIPModel,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    PreTrainedTokenizerBase,
)

from blended_pipeline.pipeline_latent import BlendedLatentDiffusionPipeline
from blended_pipeline.settings import LATENT_DEFAULTS, SCRIBBLE_STRENGTH
from blended_pipeline.text_encoding import clip_states_and_pooled

AESTHETIC_SCORE, NEGATIVE_AESTHETIC_SCORE = 6.0, 2.5  # the refiner's time ids, as SDXL's own pipelines set them


class BlendedLatentDiffusionXLPipeline(BlendedLatentDiffusionPipeline):
    r"""Blended latent editing with a Stable Diffusion XL checkpoint (base or refiner).

    Components (an SDXL directory loads with ``from_pretrained``): ``vae``, ``text_encoder`` and ``tokenizer``
    (CLIP ViT-L; None in a refiner), ``text_encoder_2`` (``CLIPTextModelWithProjection``) and ``tokenizer_2``,
    ``unet``, ``scheduler``, and the optional CLIP parts that rank the results, as in
    ``BlendedLatentDiffusionPipeline``.

    Config, beside the checkpoint defaults: ``requires_aesthetics_score`` (the refiner's time ids carry an
    aesthetic score in place of the target size) and ``force_zeros_for_empty_prompt`` (no negative prompt: zero
    embeddings, as SDXL base was trained), both read from the checkpoint's ``model_index.json``.
    """

    family = "sdxl"
    model_cpu_offload_seq = "text_encoder->text_encoder_2->unet->vae"
    _optional_components = ["text_encoder", "tokenizer", *BlendedLatentDiffusionPipeline._optional_components]
    base_models = "stabilityai/stable-diffusion-xl-base-1.0"

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel | None,
        tokenizer: PreTrainedTokenizerBase | None,
        text_encoder_2: CLIPTextModelWithProjection,
        tokenizer_2: PreTrainedTokenizerBase,
        unet: UNet2DConditionModel,
        scheduler: SchedulerMixin,
        clip_model: CLIPModel | None = None,
        clip_tokenizer: PreTrainedTokenizerBase | None = None,
        feature_extractor: CLIPImageProcessor | None = None,
        ranking_clip_model: CLIPModel | None = None,
        requires_aesthetics_score: bool = False,
        force_zeros_for_empty_prompt: bool = True,
        default_strength: float = LATENT_DEFAULTS.strength,
        scribble_strength: float = SCRIBBLE_STRENGTH,
        default_num_inference_steps: int = LATENT_DEFAULTS.num_inference_steps,
        default_rank_border_weight: float = LATENT_DEFAULTS.rank_border_weight,
        default_rank_rivals: str = LATENT_DEFAULTS.rank_rivals,
        default_candidates_per_result: int = LATENT_DEFAULTS.candidates_per_result,
        default_rank_denoiser_weight: float = LATENT_DEFAULTS.rank_denoiser_weight,
        default_restart_at: float = LATENT_DEFAULTS.restart_at,
        default_zoom: float = LATENT_DEFAULTS.zoom,
    ) -> None:
        DiffusionPipeline.__init__(self)  # the components differ from the base family's
        self._check_denoiser(unet, vae)
        self._register(locals())

    def _prompt_conditioning(
        self, prompts: list[str], negatives: list[str] | None, rows_per_prompt: int, device: torch.device
    ) -> dict[str, Any]:
        """Both encoders' penultimate hidden states side by side, the second's pooled projection and the time ids,
        rows [negatives, prompts]; no negative prompt gives zeros where the checkpoint asks for them."""
        embeddings, pooled = self._encoded(prompts, device)
        if negatives is None and self.config.force_zeros_for_empty_prompt:
            negative, negative_pooled = torch.zeros_like(embeddings), torch.zeros_like(pooled)
        else:
            negative, negative_pooled = self._encoded(negatives or [""] * len(prompts), device)
        rows = len(prompts) * rows_per_prompt
        embeddings = torch.cat([negative, embeddings]).to(self.text_encoder_2.dtype)
        time_ids = torch.tensor(self._time_ids(), dtype=embeddings.dtype, device=device)
        return {
            "encoder_hidden_states": embeddings.repeat_interleave(rows_per_prompt, 0),
            "added_cond_kwargs": {
                "text_embeds": torch.cat([negative_pooled, pooled]).repeat_interleave(rows_per_prompt, 0),
                "time_ids": time_ids.repeat_interleave(rows, 0),
            },
        }

    def _text_conditioning(self, texts: list[str], rows_per_text: int, device: torch.device) -> dict[str, Any]:
        """The prompt rows of ``_prompt_conditioning``: SDXL's negative and prompt rows differ in more than their
        text (zeros, aesthetic scores), so they are formed together. Where the checkpoint zeroes an empty negative
        that costs no encoding; a refiner, which does not, encodes the empty texts it drops."""
        return _prompt_rows(self._prompt_conditioning(texts, None, rows_per_text, device))

    def _encoded(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L, D1 + D2) penultimate hidden states of the encoders there are, and (N, P) the pooled projection."""
        states, pooled = [], None
        encoders = [(self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)]
        for tokenizer, encoder in encoders:
            if encoder is None:
                continue
            hidden, first = clip_states_and_pooled(tokenizer, encoder, texts, device, tokenizer.model_max_length)
            if pooled is None and first.ndim == 2:  # a projection's output: the pooled prompt
                pooled = first
            states.append(hidden)
        return torch.cat(states, dim=-1), pooled

    def _time_ids(self) -> list[list[float]]:
        """The negative and the positive rows of SDXL's micro-conditioning: the model's size, no crop, and the
        target size (or the refiner's aesthetic scores)."""
        size = self._model_resolution()
        if self.config.requires_aesthetics_score:
            return [[*size, 0, 0, NEGATIVE_AESTHETIC_SCORE], [*size, 0, 0, AESTHETIC_SCORE]]
        return [[*size, 0, 0, *size]] * 2


def _prompt_rows(conditioning: Any) -> Any:
    """The prompt rows of classifier-free conditioning, whose every tensor holds rows [negatives, prompts]."""
    if isinstance(conditioning, dict):
        return {name: _prompt_rows(value) for name, value in conditioning.items()}
    return conditioning[conditioning.shape[0] // 2 :]
