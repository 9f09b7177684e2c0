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
        """Rows [negatives, prompts]: SDXL's negative rows differ from its prompt rows in more than their text (zeros
        where the checkpoint asks for them and no negative is given, the refiner's aesthetic score)."""
        states, pooled = self._encoded(prompts, device)
        if negatives is None and self.config.force_zeros_for_empty_prompt:
            negative = torch.zeros_like(states), torch.zeros_like(pooled)
        else:
            negative = self._encoded(negatives or [""] * len(prompts), device)
        negative_ids, prompt_ids = self._time_ids()
        return _stacked(
            self._conditioning(*negative, negative_ids, rows_per_prompt, device),
            self._conditioning(states, pooled, prompt_ids, rows_per_prompt, device),
        )

    def _text_conditioning(self, texts: list[str], rows_per_text: int, device: torch.device) -> dict[str, Any]:
        """Each text's own conditioning (the prompt rows of ``_prompt_conditioning``), its texts alone encoded."""
        return self._conditioning(*self._encoded(texts, device), self._time_ids()[1], rows_per_text, device)

    def _conditioning(
        self,
        states: torch.Tensor,
        pooled: torch.Tensor,
        time_ids: list[float],
        rows_per_text: int,
        device: torch.device,
    ) -> dict[str, Any]:
        """The UNet's conditioning of encoded texts: their hidden states, pooled projections and time ids."""
        states = states.to(self.text_encoder_2.dtype).repeat_interleave(rows_per_text, 0)
        ids = torch.tensor([time_ids], dtype=states.dtype, device=device).repeat(states.shape[0], 1)
        return {
            "encoder_hidden_states": states,
            "added_cond_kwargs": {"text_embeds": pooled.repeat_interleave(rows_per_text, 0), "time_ids": ids},
        }

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


def _stacked(first: Any, second: Any) -> Any:
    """Two conditionings of the same layout, each tensor's rows of ``first`` then those of ``second``."""
    if isinstance(first, dict):
        return {name: _stacked(value, second[name]) for name, value in first.items()}
    return torch.cat([first, second])
