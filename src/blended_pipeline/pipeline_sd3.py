"""``BlendedLatentDiffusion3Pipeline``: blended latent editing on Stable Diffusion 3 and 3.5 checkpoints.

SD3 is a flow-matching transformer on 16-channel latents. Its per-family part: the prompt through two CLIP
encoders (penultimate hidden states side by side, projected pooled outputs joined) and T5 (zeros where a
checkpoint ships without it), and the transformer's call. Noising the input by ``scale_noise``, the velocity's
``x0_hat`` and the VAE's ``shift_factor`` come with the flow-matching scheduler and the VAE; the loop and the
rest are the latent pipeline's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DiffusionPipeline, SD3Transformer2DModel
from diffusers.schedulers import SchedulerMixin
from transformers import CLIPImageProcessor, CLIPModel, CLIPTextModelWithProjection, PreTrainedTokenizerBase

from blended_pipeline.pipeline_latent import BlendedLatentDiffusionPipeline
from blended_pipeline.settings import LATENT_DEFAULTS, SCRIBBLE_STRENGTH
from blended_pipeline.text_encoding import clip_states_and_pooled, t5_states

T5_TOKENS = 256  # the prompt's T5 tokens, as SD3's own pipelines default


class BlendedLatentDiffusion3Pipeline(BlendedLatentDiffusionPipeline):
    r"""Blended latent editing with a Stable Diffusion 3 / 3.5 checkpoint.

    Components (an SD3 directory loads with ``from_pretrained``): ``transformer`` (``SD3Transformer2DModel``),
    ``scheduler`` (flow matching), ``vae`` (16 latent channels), ``text_encoder`` and ``text_encoder_2``
    (``CLIPTextModelWithProjection``) with their tokenizers, ``text_encoder_3`` (T5) and ``tokenizer_3``, which
    may be None, and the optional CLIP parts that rank the results, as in ``BlendedLatentDiffusionPipeline``.
    """

    family = "sd3"
    flow_matching = True
    denoiser_name = "transformer"
    model_cpu_offload_seq = "text_encoder->text_encoder_2->text_encoder_3->transformer->vae"
    _optional_components = ["text_encoder_3", "tokenizer_3", *BlendedLatentDiffusionPipeline._optional_components]
    base_models = "stabilityai/stable-diffusion-3.5-medium"

    def __init__(
        self,
        transformer: SD3Transformer2DModel,
        scheduler: SchedulerMixin,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModelWithProjection,
        tokenizer: PreTrainedTokenizerBase,
        text_encoder_2: CLIPTextModelWithProjection,
        tokenizer_2: PreTrainedTokenizerBase,
        text_encoder_3: Any = None,
        tokenizer_3: PreTrainedTokenizerBase | None = None,
        clip_model: CLIPModel | None = None,
        clip_tokenizer: PreTrainedTokenizerBase | None = None,
        feature_extractor: CLIPImageProcessor | None = None,
        ranking_clip_model: CLIPModel | None = None,
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
        self._check_transformer(transformer, SD3Transformer2DModel, vae)
        self._register(locals())

    def _text_conditioning(self, texts: list[str], rows_per_text: int, device: torch.device) -> dict[str, Any]:
        """CLIP's and T5's token embeddings one after the other (CLIP's zero-padded to T5's width) and both CLIP
        encoders' pooled projections."""
        length, states, pooled = self.tokenizer.model_max_length, [], []
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            hidden, projected = clip_states_and_pooled(tokenizer, encoder, texts, device, length)
            states.append(hidden.to(self.text_encoder.dtype))
            pooled.append(projected)
        clip = torch.cat(states, dim=-1)
        t5 = self._t5_embeddings(texts, device, clip.dtype)
        embeddings = torch.cat([F.pad(clip, (0, t5.shape[-1] - clip.shape[-1])), t5], dim=-2)
        return {
            "encoder_hidden_states": embeddings.repeat_interleave(rows_per_text, 0),
            "pooled_projections": torch.cat(pooled, dim=-1).repeat_interleave(rows_per_text, 0),
        }

    def _t5_embeddings(self, texts: list[str], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """T5's last hidden states for ``texts``; zeros of the transformer's width without a T5."""
        if self.text_encoder_3 is None:
            width = self.transformer.config.joint_attention_dim
            return torch.zeros(len(texts), T5_TOKENS, width, device=device, dtype=dtype)
        return t5_states(self.tokenizer_3, self.text_encoder_3, texts, device, T5_TOKENS)

    def _denoiser_prediction(self, sample: torch.Tensor, t: torch.Tensor, conditioning: dict[str, Any]) -> torch.Tensor:
        """The transformer's velocity at ``t`` (timesteps as the scheduler gives them, in [0, 1000])."""
        timestep = t.expand(sample.shape[0])
        return self.transformer(hidden_states=sample, timestep=timestep, **conditioning)[0]
