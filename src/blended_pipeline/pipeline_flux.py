"""``BlendedLatentFluxPipeline``: blended latent editing on Flux.1 checkpoints.

Flux is a flow-matching transformer on 16-channel latents that it reads as 2x2 patches ("packed"), conditioned
on T5's token embeddings and CLIP's pooled output; a guidance-distilled checkpoint (dev) takes the guidance
weight as an input instead of running classifier-free guidance. The latents stay unpacked in the shared loop
(the scheduler's step and the blend act on each number alike); only the transformer's call packs them.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, FluxTransformer2DModel
from diffusers.schedulers import SchedulerMixin
from transformers import CLIPImageProcessor, CLIPModel, CLIPTextModel, PreTrainedTokenizerBase

from blended_pipeline.pipeline_latent import BlendedLatentDiffusionPipeline
from blended_pipeline.settings import LATENT_DEFAULTS, SCRIBBLE_STRENGTH
from blended_pipeline.text_encoding import t5_states

T5_TOKENS = 512  # the prompt's T5 tokens, as Flux's own pipelines default


class BlendedLatentFluxPipeline(BlendedLatentDiffusionPipeline):
    r"""Blended latent editing with a Flux.1 checkpoint (dev, schnell).

    Components (a Flux directory loads with ``from_pretrained``): ``scheduler`` (flow matching), ``vae`` (16
    latent channels), ``text_encoder`` (CLIP) and ``tokenizer``, ``text_encoder_2`` (T5) and ``tokenizer_2``,
    ``transformer`` (``FluxTransformer2DModel``), and the optional CLIP parts that rank the results, as in
    ``BlendedLatentDiffusionPipeline``.

    The model's resolution is the VAE's ``sample_size`` (1024 px; the transformer names none). ``guidance_scale``
    is the distilled guidance of a dev checkpoint (schnell takes none); there is no negative prompt.
    """

    family = "flux"
    classifier_free_guidance = False
    flow_matching = True
    denoiser_name = "transformer"
    model_cpu_offload_seq = "text_encoder->text_encoder_2->transformer->vae"
    base_models = "black-forest-labs/FLUX.1-dev"

    def __init__(
        self,
        scheduler: SchedulerMixin,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: PreTrainedTokenizerBase,
        text_encoder_2: Any,
        tokenizer_2: PreTrainedTokenizerBase,
        transformer: FluxTransformer2DModel,
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
        self._check_transformer(transformer, FluxTransformer2DModel, vae, packed=4)
        cells = vae.config.sample_size // 2 ** (len(vae.config.block_out_channels) - 1)
        if cells % 2:
            raise ValueError(
                f"the vae's sample_size {vae.config.sample_size} makes {cells} latent cells a side; Flux reads them in "
                "2x2 patches, so they must be even"
            )
        self._register(locals())

    def _model_resolution(self) -> tuple[int, int]:
        """The VAE's ``sample_size`` (the transformer names no size of its own)."""
        side = self.vae.config.sample_size
        return side, side

    def _image_tokens(self) -> int:
        height, width = (side // self.vae_scale_factor // 2 for side in self._model_resolution())
        return height * width

    def _schedule(self, num_inference_steps: int) -> dict[str, Any]:
        """Flux's sigmas, from 1 down to 1 / steps, where the scheduler takes sigmas (shifted for the image's
        token count where it shifts dynamically); the steps alone for one that does not."""
        arguments = super()._schedule(num_inference_steps)
        if "sigmas" not in inspect.signature(self.scheduler.set_timesteps).parameters:
            return arguments
        del arguments["num_inference_steps"]
        return {**arguments, "sigmas": np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)}

    def _text_conditioning(self, texts: list[str], rows_per_text: int, device: torch.device) -> dict[str, Any]:
        """T5's token embeddings, CLIP's pooled output, the text's (zero) position ids and the image patches'
        positions."""
        length = self.tokenizer.model_max_length
        tokens = self.tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        pooled = self.text_encoder(tokens.input_ids.to(device), output_hidden_states=False).pooler_output
        pooled = pooled.to(self.text_encoder.dtype)
        embeddings = t5_states(self.tokenizer_2, self.text_encoder_2, texts, device, T5_TOKENS)
        rows, columns = (side // self.vae_scale_factor // 2 for side in self._model_resolution())
        return {
            "encoder_hidden_states": embeddings.repeat_interleave(rows_per_text, 0),
            "pooled_projections": pooled.repeat_interleave(rows_per_text, 0),
            "txt_ids": torch.zeros(embeddings.shape[1], 3, device=device, dtype=self.text_encoder.dtype),
            "img_ids": _patch_positions(rows, columns, embeddings),
        }

    def _denoiser_prediction(self, sample: torch.Tensor, t: torch.Tensor, conditioning: dict[str, Any]) -> torch.Tensor:
        """The transformer's velocity for (B, C, H, W) latents, read as 2x2 patches; the guidance weight as its
        input where the checkpoint is guidance-distilled."""
        batch, channels, height, width = sample.shape
        packed = sample.reshape(batch, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
        packed = packed.reshape(batch, height // 2 * (width // 2), channels * 4)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full([1], self.guidance_scale, device=sample.device, dtype=torch.float32).expand(batch)
        velocity = self.transformer(
            hidden_states=packed,
            timestep=t.expand(batch).to(conditioning["encoder_hidden_states"].dtype) / 1000,
            guidance=guidance,
            return_dict=False,
            **conditioning,
        )[0]
        velocity = velocity.reshape(batch, height // 2, width // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
        return velocity.reshape(batch, channels, height, width)


def _patch_positions(rows: int, columns: int, like: torch.Tensor) -> torch.Tensor:
    """(rows * columns, 3) position ids of the packed patches: (0, row, column), on ``like``'s device and dtype."""
    positions = torch.zeros(rows, columns, 3, device=like.device)
    positions[..., 1] += torch.arange(rows, device=like.device)[:, None]
    positions[..., 2] += torch.arange(columns, device=like.device)[None, :]
    return positions.reshape(rows * columns, 3).to(like.dtype)
