"""``BlendedLatentDiffusionPipeline``: Blended Latent Diffusion (Avrahami, Fried, Lischinski, SIGGRAPH 2023) on
Stable Diffusion 1.x/2.x checkpoints, and the latent loop every model family shares (SDXL, SD3 and Flux override
the text conditioning, the denoiser's call and the schedule: ``docs/models.md``); the pixel pipeline's loop,
region, blending, ranking and image I/O underneath."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPImageProcessor, CLIPModel, CLIPTextModel, PreTrainedTokenizerBase

from blended_pipeline.denoiser_vote import (
    PREDICTION_TARGETS,
    VOTE_LEVELS,
    VOTE_NOISES,
    VOTE_SEED,
    vote_margins,
    vote_texts,
)
from blended_pipeline.families import family_of, latent_pipeline_class
from blended_pipeline.guidance import CLIPGuidance
from blended_pipeline.image_io import ImageInput
from blended_pipeline.loop import (
    BlendedPipelineMixin,
    BlendedPipelineOutput,
    Generators,
    StepEndCallback,
    call_arguments,
)
from blended_pipeline.reconstruction import fit_decoder
from blended_pipeline.region import latent_region_mask
from blended_pipeline.rivals import rival_groups
from blended_pipeline.settings import (
    LATENT_DEFAULTS,
    SCRIBBLE_STRENGTH,
    BlendNoise,
    LatentMask,
    MixedPrecision,
    OutputType,
    RankBy,
    Reconstruction,
)


class BlendedLatentDiffusionPipeline(BlendedPipelineMixin, DiffusionPipeline):
    r"""Edit the masked region of an image to match a prompt in a latent diffusion model's latent space; every
    pixel outside the mask is the input's.

    Components (a Stable Diffusion 1.x/2.x directory loads with ``from_pretrained``, its ``safety_checker`` entry
    ignored; from this class, a directory of another family loads as that family's pipeline):
        vae: the ``AutoencoderKL`` whose latents the UNet denoises.
        text_encoder, tokenizer: the prompt's encoder (``CLIPTextModel``).
        unet: a text-conditioned ``UNet2DConditionModel``.
        scheduler: any first-order or multistep diffusers scheduler (DDIM, DDPM, DPM-Solver++, Euler, ...).
        clip_model, clip_tokenizer, feature_extractor: optional CLIP parts that rank the results; without
            them the results keep their generation order.

        ranking_clip_model: optional, a second CLIP (sharing the CLIP tokenizer and feature extractor) that ranks
            in place of ``clip_model`` (``BlendedDiffusionPipeline`` says why).

    Config: as ``BlendedDiffusionPipeline``'s (``default_strength``, ``scribble_strength``,
    ``default_num_inference_steps``, ``default_rank_border_weight``, ``default_restart_at``,
    ``default_rank_rivals``, ``default_candidates_per_result``, ``default_zoom``), and ``default_rank_denoiser_weight``,
    with Blended Latent Diffusion's defaults where a checkpoint names none.
    """

    kind = "latent"
    family = "sd"
    classifier_free_guidance = True
    """False for a guidance-distilled family (Flux), whose denoiser takes the guidance weight as an input."""
    flow_matching = False
    """True for a family whose denoiser predicts a flow's velocity (SD3, Flux): it runs flow-matching schedulers."""
    denoiser_name = "unet"
    """The component that denoises the latents."""
    base_models = "stable-diffusion-v1-5/stable-diffusion-v1-5 or stabilityai/stable-diffusion-2-1-base"
    """The family's text-to-image checkpoints, named where an inpainting checkpoint is refused."""
    _guidance_scale = LATENT_DEFAULTS.guidance_scale
    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["clip_model", "clip_tokenizer", "feature_extractor", "ranking_clip_model"]
    _exclude_from_cpu_offload = ["clip_model", "ranking_clip_model"]
    _callback_tensor_inputs = [
        "latents",
        "noised_image",
        "mask",
        "image",
        "noise_pred",
        "pred_original_sample",
        "prompt_embeds",
    ]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: PreTrainedTokenizerBase,
        unet: UNet2DConditionModel,
        scheduler: SchedulerMixin,
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
        super().__init__()
        self._check_denoiser(unet, vae)
        self._register(locals())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, **kwargs: Any) -> BlendedLatentDiffusionPipeline:
        """Load a checkpoint as diffusers does; from this class, a directory (or hub repository) of another
        family (SDXL, ...) loads as that family's pipeline, read from its ``model_index.json``."""
        if cls is BlendedLatentDiffusionPipeline:
            hub = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")
            index = cls.load_config(pretrained_model_name_or_path, **{k: v for k, v in kwargs.items() if k in hub})
            family = family_of(index)
            if family != "sd":
                return latent_pipeline_class(family).from_pretrained(pretrained_model_name_or_path, **kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def _check_denoiser(self, unet: Any, vae: AutoencoderKL) -> None:
        """Refuse a denoiser that is not the family's text-to-image one: a pixel UNet, or an inpainting one (its
        extra input channels take the mask and the masked image, which blending replaces)."""
        if not isinstance(unet, UNet2DConditionModel):
            raise TypeError(
                f"unet must be a text-conditioned UNet2DConditionModel (a latent diffusion model's), got "
                f"{type(unet).__name__}; a pixel UNet2DModel belongs in BlendedDiffusionPipeline"
            )
        channels, latent = unet.config.in_channels, vae.config.latent_channels
        if channels == 2 * latent + 1:
            raise ValueError(
                f"unet takes {channels} input channels: it is an inpainting model's (latents, mask and masked "
                f"image); blended editing needs the text-to-image model it was made from, e.g. {self.base_models}"
            )
        if channels != latent:
            raise ValueError(f"unet takes {channels} input channels but the vae's latents have {latent}")

    def _check_transformer(self, transformer: Any, kind: type, vae: AutoencoderKL, packed: int = 1) -> None:
        """Refuse a transformer of another family, or an inpainting or fill one (its extra input channels take the
        mask and the masked image, which blending replaces); ``packed`` latent channels make one token's."""
        if not isinstance(transformer, kind):
            raise TypeError(f"transformer must be a {kind.__name__}, got {type(transformer).__name__}")
        channels, latent = transformer.config.in_channels, vae.config.latent_channels * packed
        if channels != latent:
            raise ValueError(
                f"transformer takes {channels} input channels but the vae's latents make {latent}: an inpainting or "
                f"fill model's takes the mask and the masked image too; blended editing needs the text-to-image "
                f"model, e.g. {self.base_models}"
            )

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        image: ImageInput | list[ImageInput],
        mask_image: ImageInput | list[ImageInput],
        num_inference_steps: int | None = None,
        strength: float | None = None,
        guidance_scale: float = LATENT_DEFAULTS.guidance_scale,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = LATENT_DEFAULTS.num_images_per_prompt,
        latent_mask: LatentMask = LATENT_DEFAULTS.latent_mask,
        reconstruction: Reconstruction = LATENT_DEFAULTS.reconstruction,
        blend: bool = True,
        blend_noise: BlendNoise = LATENT_DEFAULTS.blend_noise,
        mask_blur: float = LATENT_DEFAULTS.mask_blur,
        crop_margin: float = LATENT_DEFAULTS.crop_margin,
        zoom: float | None = None,
        rank_by: RankBy = LATENT_DEFAULTS.rank_by,
        rank_border_weight: float | None = None,
        rank_rivals: str | None = None,
        candidates_per_result: int | None = None,
        rank_denoiser_weight: float | None = None,
        restart_at: float | None = None,
        eta: float = LATENT_DEFAULTS.eta,
        mixed_precision: MixedPrecision | None = None,
        generator: Generators = None,
        output_type: OutputType = LATENT_DEFAULTS.output_type,
        return_dict: bool = True,
        callback_on_step_end: StepEndCallback | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> BlendedPipelineOutput | tuple:
        r"""Edit ``image`` where ``mask_image`` is white so that the region matches ``prompt``.

        Args:
            prompt: what the masked region should show; a list edits several images (or one image several ways)
                in one batch.
            image: the input, any size (edited on a crop at the model's resolution, pasted back); or a list.
            mask_image: white / 1 = edit, black / 0 = keep; thresholded at 0.5; the image's aspect ratio.
            num_inference_steps: steps of the full schedule; ``strength`` of them are run. Default: the
                checkpoint's ``default_num_inference_steps`` (Blended Latent Diffusion's 50 where it names none).
            strength: fraction of the schedule run, from the input's latents noised to that level (1.0 = pure
                noise); default: the checkpoint's ``default_strength`` (0.75: blending starts at 25%).
            guidance_scale: classifier-free guidance weight (1 = none).
            negative_prompt: what the region should not show (one, or one per edit); default the empty prompt.
            num_images_per_prompt: results per edit.
            latent_mask: how the mask reaches latent resolution: "conservative" (a latent cell is edited if any
                of its pixels is) or "nearest" (Blended Latent Diffusion's resize and threshold).
            reconstruction: "paste" (decode, then paste the input outside the mask) or "decoder" (first fit a
                copy of the decoder per result returned so that it decodes the input outside the mask: a smaller
                seam; with more candidates than results they are ranked, and scored, as the plain decoder shows
                them, pasted, so that only those returned are fitted);
                "none" returns the decoder's pixels as they are, outside the mask too (diffusers' inpaint
                pipelines' output: for comparisons).
            blend: blend with the noised input latents after every step; False runs plain img2img in the crop.
            blend_noise: "fresh" noise brings the input to each level (the paper's), or "initial" reuses the
                start's (diffusers' inpaint pipelines').
            rank_border_weight: marks each result down by this times the mean step of colour across the mask's
                edge when the CLIP parts rank them (0: by CLIP alone); needs the CLIP parts. Default: the
                checkpoint's ``default_rank_border_weight``.
            rank_rivals, candidates_per_result: as in ``BlendedDiffusionPipeline``; needs the CLIP parts.
            rank_denoiser_weight: re-rank each edit's better half by CLIP (at least the results returned) by CLIP's
                score plus this weight on the denoiser's own vote (``blended_pipeline.denoiser_vote``: its error in
                the mask under the prompt's best rival, or no text, less its error under the prompt, the results
                noised halfway), both standardised over that half, the sum scored in CLIP's units; needs the CLIP
                parts. Default: the checkpoint's ``default_rank_denoiser_weight`` (0: CLIP alone).
            restart_at: as in ``BlendedDiffusionPipeline`` (the samples' ``x0_hat`` decoded and ranked); needs the
                CLIP parts and a scheduler on unscaled samples. Default: the checkpoint's ``default_restart_at``.
            mask_blur, crop_margin, zoom, rank_by, eta, mixed_precision, generator, output_type, return_dict,
            callback_on_step_end, callback_on_step_end_tensor_inputs: as in ``BlendedDiffusionPipeline``; here
                a callback's ``latents``, ``noised_image``, ``image`` and ``mask`` are in latent space.

        Returns:
            ``BlendedPipelineOutput`` (or ``(images, scores)``): ``num_images_per_prompt`` results per edit,
            edits in input order, each edit's best first when CLIP parts rank them (``scores`` None otherwise).
        """
        # 0. The checkpoint's defaults for what is not given; every input checked before any work.
        settings = self._settings(call_arguments(locals()))
        prompts, images, masks = self._edits(prompt, image, mask_image)
        negatives = self._negative_prompts(negative_prompt, len(prompts))
        callbacks = self._step_end_callbacks(
            settings.blend, callback_on_step_end, callback_on_step_end_tensor_inputs, settings.restart_at
        )
        self.check_inputs(prompts, negatives, generator, callbacks, settings)
        sources, regions = self._edit_regions(images, masks, settings)
        precision, device = settings.mixed_precision, self._execution_device
        results_made, self._interrupt = settings.results_made, False

        # 1. Each edit's latents (the posterior mean, scaled) and its mask at latent resolution, one row per result;
        #    the prompts' embeddings for classifier-free guidance; the ranking, when there are CLIP parts.
        model_image = torch.cat([r.image for r in regions]).to(device)
        model_mask = torch.cat([r.mask for r in regions]).repeat_interleave(results_made, 0).to(device)
        with self._autocast(precision, device):
            source_latents = self._encode(model_image).repeat_interleave(results_made, 0)
            conditioning = self._prompt_conditioning(prompts, negatives, results_made, device)
        region_mask = latent_region_mask(model_mask, tuple(source_latents.shape[-2:]), settings.latent_mask)
        model_image = model_image.repeat_interleave(results_made, 0)
        target_prompts = [p for p in prompts for _ in range(results_made)]
        guidance = self._clip_guidance()
        target = guidance.prepare(target_prompts, device) if guidance is not None else None
        self._ranking = self._ranking_for(
            guidance, target, target_prompts, settings, model_image, model_mask, regions, sources, self._decode
        )

        # 2. The part of the schedule to run; the guidance weight, which a step-end callback may change.
        self._guidance_scale = settings.guidance_scale
        timesteps = self._timesteps(settings.num_inference_steps, settings.strength, device)
        self._num_timesteps = len(timesteps)

        # 3. Denoise from the input's latents, with classifier-free guidance (where the family runs it); blended,
        #    the callbacks after.
        dtype = self.denoiser.dtype  # read once: the property walks every module
        wants_x0 = any("pred_original_sample" in names for _, names in callbacks)

        def predict(sample: torch.Tensor, t: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
            model_input = torch.cat([sample] * 2) if self.classifier_free_guidance else sample
            if hasattr(self.scheduler, "scale_model_input"):  # flow-matching schedulers take the sample as it is
                model_input = self.scheduler.scale_model_input(model_input, t)
            with self._autocast(precision, device):
                noise_pred = self._denoiser_prediction(model_input.to(dtype), t, conditioning).float()
            if self.classifier_free_guidance:
                unconditional, conditional = noise_pred.chunk(2)
                noise_pred = unconditional + self.guidance_scale * (conditional - unconditional)
            return noise_pred, self._predicted_original(sample, noise_pred, t) if wants_x0 else None

        latents = self.denoise(
            predict,
            source_latents,
            source_latents,
            region_mask,
            timesteps,
            generator,
            eta,
            callbacks,
            settings.blend_noise,
            prompt_embeds=conditioning["encoder_hidden_states"],
        )

        # 4. Decode (with a decoder fitted to the input's background, when asked: for the best candidates only);
        #    rank each edit's results and keep its best, then back to each input's size, exact outside the mask.
        if settings.output_type == "latent":
            return self._latent_output(latents, settings, return_dict)
        fit_later = settings.reconstruction == "decoder" and settings.candidates_per_result > 1
        with self._autocast(precision, device):
            decoded_as = "paste" if fit_later else settings.reconstruction
            results = self._decode(latents, model_image, model_mask, decoded_as).clamp(-1, 1)

        def fitted(rows: torch.Tensor) -> torch.Tensor:
            with self._autocast(precision, device):
                return self._decode(latents[rows], model_image[rows], model_mask[rows], "decoder").clamp(-1, 1)

        def vote(rows: torch.Tensor) -> torch.Tensor:  # on the results as returned, encoded again
            chosen = rows.flatten()
            with self._autocast(precision, device):
                returned = self._encode(self._ranking.as_returned(results[chosen], chosen))
            edit_prompts = [target_prompts[int(edit_rows[0])] for edit_rows in rows]
            seen_mask = latent_region_mask(self._ranking.mask[chosen], tuple(returned.shape[-2:]), settings.latent_mask)
            return self._denoiser_votes(returned, seen_mask, edit_prompts, settings)

        exact = settings.reconstruction != "none"
        return self._ranked_output(
            results, regions, sources, settings, return_dict, exact, fitted if fit_later else None, vote
        )

    @property
    def guidance_scale(self) -> float:
        """The classifier-free guidance weight of the current call (a step-end callback may set ``_guidance_scale``,
        as in diffusers' pipelines)."""
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Whether the current guidance weight asks for classifier-free guidance (never in a guidance-distilled
        family); the two passes run in every other family whatever the weight."""
        return self.classifier_free_guidance and self._guidance_scale > 1

    def _schedule(self, num_inference_steps: int) -> dict[str, Any]:
        """The steps, and for a flow-matching scheduler with dynamic shifting the shift ``mu`` for the image's
        token count, as diffusers' pipelines compute it."""
        config = self.scheduler.config
        if not config.get("use_dynamic_shifting"):
            return {"num_inference_steps": num_inference_steps}
        base, most = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
        slope = (config.get("max_shift", 1.15) - config.get("base_shift", 0.5)) / (most - base)
        intercept = config.get("base_shift", 0.5) - slope * base
        return {"num_inference_steps": num_inference_steps, "mu": self._image_tokens() * slope + intercept}

    def _image_tokens(self) -> int:
        """How many tokens (patches of latent cells) the denoiser sees of an image at the model's resolution."""
        patch = self.denoiser.config.get("patch_size", 1) or 1
        height, width = (side // self.vae_scale_factor // patch for side in self._model_resolution())
        return height * width

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell on a side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def denoiser(self) -> torch.nn.Module:
        """The network that denoises the latents: the UNet here, a transformer in SD3 and Flux."""
        return getattr(self, self.denoiser_name)

    def _modules_run_every_step(self) -> dict[str, torch.nn.Module]:
        return {self.denoiser_name: self.denoiser}

    def _model_resolution(self) -> tuple[int, int]:
        """The pixels the denoiser's latents decode to: the checkpoint's own resolution."""
        size = self.denoiser.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return height * self.vae_scale_factor, width * self.vae_scale_factor

    @contextmanager
    def _vae_precision(self, device: torch.device) -> Iterator[None]:
        """Run the VAE in float32 where its config asks for it (``force_upcast``: SDXL's VAE overflows in fp16)
        and fp16 would be used: autocast off, fp16 weights upcast for the while, as diffusers' pipelines do."""
        fp16 = self.vae.dtype == torch.float16 or (
            torch.is_autocast_enabled(device.type) and torch.get_autocast_dtype(device.type) == torch.float16
        )
        if not (fp16 and self.vae.config.get("force_upcast", False)):
            yield
            return
        dtype = self.vae.dtype
        self.vae.to(torch.float32)
        try:
            with torch.autocast(device.type, enabled=False):
                yield
        finally:
            self.vae.to(dtype)

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        """The posterior mean of ``images`` (in [-1, 1]) in the denoiser's latent space (the method's z_init)."""
        with self._vae_precision(images.device):
            posterior = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        shift, scale = self._latent_normalization(images.device)
        return (posterior.mean.float() - shift) * scale

    def _decode(
        self,
        latents: torch.Tensor,
        source: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        reconstruction: Reconstruction = "paste",
    ) -> torch.Tensor:
        """Pixels of each row of ``latents``; with "decoder", each from its own decoder fitted to ``source``
        outside ``mask``."""
        shift, scale = self._latent_normalization(latents.device)
        unscaled = latents / scale + shift
        if reconstruction != "decoder":
            with self._vae_precision(latents.device):
                return self.vae.decode(unscaled.to(self.vae.dtype)).sample.float()
        rows = [
            fit_decoder(self.vae, unscaled[i : i + 1], source[i : i + 1], mask[i : i + 1]).image
            for i in range(latents.shape[0])
        ]
        return torch.cat(rows)

    def _latent_normalization(self, device: torch.device) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """The shift and scale from the VAE's latents to the denoiser's: per-channel ``latents_mean`` and
        ``latents_std`` where the VAE's config has them, else its ``shift_factor`` (SD3, Flux; 0 elsewhere) and
        ``scaling_factor``."""
        config = self.vae.config
        mean, std = config.get("latents_mean"), config.get("latents_std")
        if mean is not None and std is not None:
            shape = (1, -1, 1, 1)
            std = torch.tensor(std, device=device).view(shape)
            return torch.tensor(mean, device=device).view(shape), config.scaling_factor / std
        return config.get("shift_factor") or 0.0, config.scaling_factor

    def _predicted_original(
        self, sample: torch.Tensor, prediction: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor | None:
        """``x0_hat`` of a variance-preserving or flow-matching scheduler's sample (None for sigma-scaled ones, such
        as Euler's)."""
        flow = self.scheduler.config.get("prediction_type") == "flow_prediction"
        if flow or hasattr(self.scheduler, "scale_noise"):  # x_t = (1 - sigma) x0 + sigma noise; v = noise - x0
            return sample - t.float() / self.scheduler.config.num_train_timesteps * prediction
        if float(getattr(self.scheduler, "init_noise_sigma", 1.0)) != 1.0:
            return None
        alpha_bar = self.scheduler.alphas_cumprod.to(sample.device)[t].float()
        kind = self.scheduler.config.get("prediction_type", "epsilon")
        if kind == "v_prediction":
            return alpha_bar.sqrt() * sample - (1 - alpha_bar).sqrt() * prediction
        if kind == "sample":
            return prediction
        return (sample - (1 - alpha_bar).sqrt() * prediction) / alpha_bar.sqrt()

    def _clip_guidance(self, clip_model: CLIPModel | None = None) -> CLIPGuidance | None:
        """CLIP from the optional parts (``clip_model``, or another CLIP sharing their tokenizer and feature
        extractor); None without them."""
        clip_model = self.clip_model if clip_model is None else clip_model
        if clip_model is None:
            return None
        return CLIPGuidance(clip_model, self.clip_tokenizer or self.tokenizer, self.feature_extractor)

    @staticmethod
    def _negative_prompts(negative_prompt: str | list[str] | None, count: int) -> list[str] | None:
        """One negative prompt per edit; None when none is given (a family may then use zeros)."""
        if negative_prompt is None:
            return None
        if isinstance(negative_prompt, str):
            return [negative_prompt] * count
        if len(negative_prompt) != count:
            raise ValueError(f"got {len(negative_prompt)} negative prompts for {count} edit(s); give one, or one each")
        return list(negative_prompt)

    def _prompt_conditioning(
        self, prompts: list[str], negatives: list[str] | None, rows_per_prompt: int, device: torch.device
    ) -> dict[str, Any]:
        """The denoiser's keyword arguments for a sampling step, each row repeated ``rows_per_prompt`` times (one per
        result made): [negatives, prompts] with classifier-free guidance (the empty text where no negative is given),
        the prompts alone without. A family whose unconditional rows are not a text's own (SDXL's zeros) overrides
        this."""
        texts = [*(negatives or [""] * len(prompts)), *prompts] if self.classifier_free_guidance else prompts
        return self._text_conditioning(texts, rows_per_prompt, device)

    def _denoiser_prediction(self, sample: torch.Tensor, t: torch.Tensor, conditioning: dict[str, Any]) -> torch.Tensor:
        """The denoiser's output for ``sample`` (scaled for the scheduler, in the denoiser's dtype) at ``t``."""
        return self.unet(sample, t, **conditioning).sample

    def _text_conditioning(self, texts: list[str], rows_per_text: int, device: torch.device) -> dict[str, Any]:
        """The denoiser's keyword arguments for its prediction under each of ``texts``, each repeated
        ``rows_per_text`` times: here the text encoder's last hidden states (a family with more encoders overrides
        this)."""
        length = self.tokenizer.model_max_length
        tokens = self.tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        embeddings = self.text_encoder(tokens.input_ids.to(device)).last_hidden_state
        return {"encoder_hidden_states": embeddings.repeat_interleave(rows_per_text, 0).to(self.denoiser.dtype)}

    def _training_example(
        self, clean: torch.Tensor, noise: torch.Tensor, level: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A training example at ``level`` of the schedule (0: clean, 1: noise): ``clean`` noised as the denoiser
        reads it, the timestep it is told, and what it should predict (a flow's velocity, else what the scheduler's
        ``prediction_type`` names)."""
        trained = self.scheduler.config.num_train_timesteps
        if self.flow_matching:
            timestep = torch.tensor(level * trained, device=clean.device)
            return (1 - level) * clean + level * noise, timestep, noise - clean
        t = round(level * (trained - 1))
        alpha_bar = self.scheduler.alphas_cumprod[t].to(clean.device).float()
        sample = alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise
        targets = {
            "epsilon": noise,
            "v_prediction": alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * clean,
            "sample": clean,
        }
        return sample, torch.tensor(t, device=clean.device), targets[self.scheduler.config.prediction_type]

    def _denoiser_votes(
        self, latents: torch.Tensor, mask: torch.Tensor, prompts: list[str], settings: Any
    ) -> torch.Tensor:
        """(edits * pool,) the denoiser's vote for each of ``latents``, one edit's pool after another (``prompts``:
        one per edit), from its errors inside the latent ``mask`` under each of the edit's ``vote_texts``, noised
        at each of ``VOTE_LEVELS`` with the same noises; a text's rows batched with others' up to the batch of a
        sampling step (two rows per result made with classifier-free guidance, one without)."""
        groups, edits = rival_groups(settings.rank_rivals), len(prompts)
        pool = latents.shape[0] // edits
        texts = [vote_texts(prompt, groups) for prompt in prompts]
        pairs = [(edit, text) for edit in range(edits) for text in texts[edit]]
        step_rows = (2 if self.classifier_free_guidance else 1) * edits * settings.results_made
        per_call = max(1, step_rows // pool)
        device, dtype = latents.device, self.denoiser.dtype
        generator = torch.Generator().manual_seed(VOTE_SEED)
        noises = randn_tensor((VOTE_NOISES, 1, *latents.shape[1:]), generator=generator, device=device)
        errors = []
        for first in range(0, len(pairs), per_call):
            chunk = pairs[first : first + per_call]
            picked = torch.cat([torch.arange(edit * pool, (edit + 1) * pool) for edit, _ in chunk]).to(device)
            clean, region = latents[picked], mask[picked]
            cells = region.sum(dim=(1, 2, 3)).clamp(min=1) * clean.shape[1]
            error = torch.zeros(len(picked), device=device)
            with self._autocast(settings.mixed_precision, device):
                conditioning = self._text_conditioning([text for _, text in chunk], pool, device)
                for level in VOTE_LEVELS:
                    for noise in noises:
                        sample, t, target = self._training_example(clean, noise.expand_as(clean), level)
                        prediction = self._denoiser_prediction(sample.to(dtype), t, conditioning).float()
                        error += ((prediction - target) ** 2 * region).sum(dim=(1, 2, 3)) / cells
            errors.append(error.view(len(chunk), pool))
        by_edit = torch.cat(errors).split([len(t) for t in texts])
        return torch.cat([vote_margins(e.T) for e in by_edit])

    def check_inputs(
        self,
        prompts: list[Any],
        negative_prompts: list[Any] | None,
        generator: Generators,
        callbacks: list[tuple[StepEndCallback, list[str]]],
        settings: dict[str, Any],
    ) -> None:
        """Raise ``ValueError``/``TypeError`` saying what is wrong and what is expected (``check_settings``)."""
        for negative in negative_prompts or []:
            if not isinstance(negative, str):
                raise TypeError(f"negative_prompt must be a string or a list of strings, got {type(negative).__name__}")
        if negative_prompts is not None and not self.classifier_free_guidance:
            raise ValueError(
                f"negative_prompt needs classifier-free guidance, which a {self.family} model (guidance-distilled) "
                "does not run; describe what the region should show in the prompt instead"
            )
        flow = (
            hasattr(self.scheduler, "scale_noise") or self.scheduler.config.get("prediction_type") == "flow_prediction"
        )
        if flow != self.flow_matching:
            wanted = "a flow-matching scheduler (FlowMatchEulerDiscreteScheduler, or DPM-Solver++ with flow sigmas)"
            raise ValueError(
                f"{type(self.scheduler).__name__} does not fit a {self.family} model, which needs "
                f"{wanted if self.flow_matching else 'a noise-prediction scheduler (DDIM, DDPM, Euler, DPM-Solver++)'}"
            )
        if settings["rank_denoiser_weight"] > 0:
            self._check_vote()
        if settings["restart_at"] > 0 and float(getattr(self.scheduler, "init_noise_sigma", 1.0)) != 1.0:
            raise ValueError(
                f"restart_at ranks each sample's x0_hat, which {type(self.scheduler).__name__}'s sigma-scaled samples "
                "do not give here; use a variance-preserving scheduler that draws noise (DDPM, or DDIM with eta > 0), "
                "or restart_at=0"
            )
        self._check_call(prompts, generator, callbacks, settings)

    def _check_vote(self) -> None:
        """Refuse a vote on a schedule whose training examples it cannot form (``_training_example``); one on latents
        is refused with candidates (``_check_call``)."""
        if self.flow_matching:
            return
        name, kind = type(self.scheduler).__name__, self.scheduler.config.get("prediction_type")
        missing = "alphas_cumprod" if not hasattr(self.scheduler, "alphas_cumprod") else None
        if missing is None and kind not in PREDICTION_TARGETS:
            missing = f"a prediction_type among {PREDICTION_TARGETS} (it has {kind!r})"
        if missing is not None:
            raise ValueError(
                f"rank_denoiser_weight noises the results as the denoiser was trained, which needs the scheduler's "
                f"{missing}; {name} lacks it, so pass rank_denoiser_weight=0 or swap the scheduler"
            )

    @staticmethod
    def check_scheduler(scheduler: Any) -> None:
        """Refuse schedulers whose steps take two model calls: the sample between them may not be blended."""
        if getattr(scheduler, "order", 1) > 1:
            raise ValueError(
                f"{type(scheduler).__name__} takes {scheduler.order} model calls per step, between which the sample "
                "may not be blended; use a first-order or multistep scheduler (DDIM, DDPM, Euler, DPM-Solver++)"
            )
        for attribute in ("step", "set_timesteps"):
            if not hasattr(scheduler, attribute):
                raise ValueError(f"{type(scheduler).__name__} has no `{attribute}`; use a diffusers scheduler")
        if not (hasattr(scheduler, "add_noise") or hasattr(scheduler, "scale_noise")):
            raise ValueError(f"{type(scheduler).__name__} cannot noise an input (no add_noise or scale_noise)")
