"""``BlendedDiffusionPipeline``: text-driven editing of an image region (Avrahami et al., CVPR 2022)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from diffusers import DiffusionPipeline, UNet2DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers import SchedulerMixin
from transformers import CLIPImageProcessor, CLIPModel, PreTrainedTokenizerBase

from blended_pipeline.augment import Augmentation, ProjectiveAugmentation
from blended_pipeline.guidance import (
    BackgroundLoss,
    BackgroundPreservationLoss,
    CLIPGuidance,
    Guidance,
    GuidanceLoss,
    gradients_for_samples_only,
    guided_noise_prediction,
    is_guided_step,
    mse_outside,
)
from blended_pipeline.image_io import ImageInput
from blended_pipeline.loop import (
    BlendedPipelineMixin,
    BlendedPipelineOutput,
    Generators,
    StepEndCallback,
    call_arguments,
)
from blended_pipeline.region import fill_from_surround
from blended_pipeline.settings import (
    DEFAULTS,
    SCRIBBLE_STRENGTH,
    BackgroundLossName,
    BlendNoise,
    ClipInput,
    ClipView,
    MaskedStart,
    MixedPrecision,
    OutputType,
    RankBy,
)

LEARNED_VARIANCE = ("learned", "learned_range")


BlendedDiffusionPipelineOutput = BlendedPipelineOutput  # the scores are always there: every result is ranked


class BlendedDiffusionPipeline(BlendedPipelineMixin, DiffusionPipeline):
    r"""Edit the masked region of an image to match a prompt; keep the rest exactly (Algorithm 2).

    Components:
        unet: a ``UNet2DModel`` predicting the noise (3 output channels, or 6 with a learned variance).
        scheduler: a variance-preserving scheduler with ``alphas_cumprod`` (DDPM, DDIM, DPM-Solver, ...).
        clip_model, tokenizer, feature_extractor: the CLIP that guides and, unless another is given, ranks.
        ranking_clip_model: optional, a second CLIP (sharing the tokenizer and feature extractor) that ranks the
            results in place of the one that guides: the results were optimised against the guiding CLIP, so its
            scores favour what fooled it, and a CLIP that did not guide judges without that bias.

    Config (saved in ``model_index.json``; how much of the input survives a strength depends on the noise
    schedule, so each checkpoint carries its own):
        default_strength: the ``strength`` of a call that names none.
        default_num_inference_steps: the ``num_inference_steps`` of a call that names none (the paper's 100; a
            model may need fewer, measured on its own edits).
        scribble_strength: the strength for scribble-guided edits (lower: the strokes must survive the noise).
        default_rank_border_weight: the ``rank_border_weight`` of a call that names none (0: by CLIP alone; the
            right weight depends on the scale of the CLIP's scores, so it is the checkpoint's).
        default_restart_at: the ``restart_at`` of a call that names none (0: no restart, the paper; when a result's
            shape is settled depends on the model and its schedule, so it is the checkpoint's).
        default_rank_rivals, default_candidates_per_result: those settings of a call that names none (what a
            result may be confused with, and how many candidates a model needs, are the checkpoint's).
        default_zoom: the ``zoom`` of a call that names none (0: none; how small a region a model draws well
            depends on the model).

    Pluggable parts, plain attributes: ``guidance`` (a ``Guidance``; ``None``, the default, is CLIP from the
    components) and ``augmentation`` (the extending augmentations).
    """

    kind = "pixel"
    model_cpu_offload_seq = "clip_model->unet"
    _optional_components = ["ranking_clip_model"]
    _exclude_from_cpu_offload = ["ranking_clip_model"]  # it ranks mid-run (a restart) as well as at the end
    _callback_tensor_inputs = ["latents", "noised_image", "mask", "image", "noise_pred", "pred_original_sample"]

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: SchedulerMixin,
        clip_model: CLIPModel,
        tokenizer: PreTrainedTokenizerBase,
        feature_extractor: CLIPImageProcessor,
        ranking_clip_model: CLIPModel | None = None,
        default_strength: float = DEFAULTS.strength,
        scribble_strength: float = SCRIBBLE_STRENGTH,
        default_num_inference_steps: int = DEFAULTS.num_inference_steps,
        default_rank_border_weight: float = DEFAULTS.rank_border_weight,
        default_rank_rivals: str = DEFAULTS.rank_rivals,
        default_candidates_per_result: int = DEFAULTS.candidates_per_result,
        default_restart_at: float = DEFAULTS.restart_at,
        default_zoom: float = DEFAULTS.zoom,
    ) -> None:
        super().__init__()
        self._register(locals())
        self.guidance: Guidance | None = None
        self.augmentation: Augmentation = ProjectiveAugmentation()
        self._lpips_loss: BackgroundPreservationLoss | None = None

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        image: ImageInput | list[ImageInput],
        mask_image: ImageInput | list[ImageInput],
        num_inference_steps: int | None = None,
        strength: float | None = None,
        num_images_per_prompt: int = DEFAULTS.num_images_per_prompt,
        clip_guidance_scale: float = DEFAULTS.clip_guidance_scale,
        num_augmentations: int = DEFAULTS.num_augmentations,
        guidance_every: int = DEFAULTS.guidance_every,
        guidance_end: float = DEFAULTS.guidance_end,
        range_loss_scale: float = DEFAULTS.range_loss_scale,
        background_loss_scale: float = DEFAULTS.background_loss_scale,
        background_loss: BackgroundLossName | BackgroundLoss = DEFAULTS.background_loss,
        blend: bool = True,
        blend_noise: BlendNoise = DEFAULTS.blend_noise,
        backprop_through_unet: bool = True,
        clip_input: ClipInput = DEFAULTS.clip_input,
        clip_view: ClipView = DEFAULTS.clip_view,
        guidance_area_reference: float | None = DEFAULTS.guidance_area_reference,
        masked_start: MaskedStart = DEFAULTS.masked_start,
        mask_blur: float = DEFAULTS.mask_blur,
        crop_margin: float = DEFAULTS.crop_margin,
        zoom: float | None = None,
        rank_by: RankBy = DEFAULTS.rank_by,
        rank_border_weight: float | None = None,
        rank_rivals: str | None = None,
        candidates_per_result: int | None = None,
        restart_at: float | None = None,
        eta: float = DEFAULTS.eta,
        mixed_precision: MixedPrecision | None = None,
        generator: Generators = None,
        output_type: OutputType = DEFAULTS.output_type,
        return_dict: bool = True,
        callback_on_step_end: StepEndCallback | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> BlendedDiffusionPipelineOutput | tuple:
        r"""Edit ``image`` where ``mask_image`` is white so that the region matches ``prompt``.

        Args:
            prompt: what the masked region should show; a list edits several images (or one image several ways)
                in one batch, each edit ranked on its own.
            image: the input, any size (the edit runs at the UNet's resolution and is pasted back); or a list,
                one per prompt.
            mask_image: white / 1 = edit, black / 0 = keep; thresholded at 0.5; the image's aspect ratio. Or a
                list, one per prompt. A single image or mask serves every prompt.
            num_inference_steps: steps of the full schedule; ``strength`` of them are run. Default: the checkpoint's
                ``default_num_inference_steps``.
            strength: fraction of the schedule run, starting from the input noised to that level (1.0 = pure noise);
                default: the checkpoint's ``default_strength``.
            num_images_per_prompt: results to return per edit, ranked.
            clip_guidance_scale: weight of ``D_CLIP``, averaged over the augmented views.
            num_augmentations: views per result given to CLIP (the first untransformed).
            guidance_every: guide every ``k``-th step (the first included); the steps between take the UNet's
                prediction alone, one forward pass instead of a forward and backward pass through UNet and CLIP
                (faster; its cost in quality is measured in docs/benchmarks.md).
            guidance_end: the fraction of the steps run that are guided, from the first; the last steps take the
                UNet's prediction alone, when the region's shape and colour are settled (faster; measured in
                docs/benchmarks.md).
            range_loss_scale: weight of the penalty on ``x0_hat`` outside [-1, 1].
            background_loss_scale: weight of ``D_bg`` outside the mask (Algorithm 1's lambda; 0 = none).
            background_loss: ``D_bg``: "lpips" (the paper's ``0.5 * (MSE + LPIPS)``; LPIPS's backbone is
                downloaded on first use), "mse" (offline), or a callable ``(source, images, mask) -> (N,)``.
            blend: blend with the noised input after every step (Algorithm 2); False gives Algorithm 1.
            blend_noise: "fresh" noise brings the input to each level (the paper's), or "initial" reuses the
                start's (diffusers' inpaint pipelines').
            backprop_through_unet: take the guidance gradient through the UNet (exact); False treats the
                UNet's output as constant, which skips the UNet's backward pass (cheaper, less faithful).
            clip_input: "x0_hat" (the paper) or "mixed", ``x0_hat * sqrt(1 - abar) + x_t * (1 - sqrt(1 - abar))``
                (the authors' code).
            clip_view: what CLIP sees of each result before the augmentations: "masked" (the paper: the whole
                image, the outside of the mask black) or "crop" (the square around the mask, enlarged to the
                view's size, so that a small region fills it).
            guidance_area_reference: None (the paper): every result's CLIP term weighs ``clip_guidance_scale``. A
                fraction of the image's area: the weight is scaled by this over the mask's area, so a region
                smaller than that is guided harder, a larger one more gently.
            masked_start: what the first step starts from inside the mask: "input" (the paper: the input, noised
                to the first timestep) or "surround" (the masked region filled with the mean colour just
                outside it, then noised), so that at a strength below 1 the object the mask covers does not
                carry over into the result (``region.fill_from_surround``).
            mask_blur: feather the mask by this many input pixels (outward); blending and the final paste then use
                the soft mask, so there is no hard seam. Pixels where the feathered mask is 0 stay exact.
            crop_margin: an image larger than the UNet is edited on a square crop around the mask's bounding box,
                grown by this fraction of the box's longer side on each side for context.
            zoom: a mask whose (feathered) bounding box spans less than this share of that crop's side is edited on
                the square around it that it spans this share of (keeping ``crop_margin``'s context), enlarged to
                the model's resolution, so that the model gives the region more of its pixels (diffusers'
                ``padding_mask_crop`` does the like); the results are ranked in the crop they would have had without
                zoom, where objects are the size the ranking knows. 0 = never. Default: the checkpoint's
                ``default_zoom``.
            rank_by: what the ranking scores: "masked" (the paper: the masked region alone), "whole" (the result
                with its context) or "both" (the sum; see ``ranking.rank`` and docs/method.md for the measurement).
            rank_border_weight: marks each result down by this times the mean step of colour across the mask's
                edge (``ranking.edge_step``); 0 ranks by CLIP alone. Default: the checkpoint's
                ``default_rank_border_weight``.
            rank_rivals: groups of names ("circle,square,triangle;cat,dog"): each result is marked down by half its
                best score for the prompt with a name of a group swapped for another (``ranking.RIVAL_WEIGHT``), so a
                result that CLIP takes for a rival as readily as for the prompt ranks lower. Default: the
                checkpoint's ``default_rank_rivals`` ("": none).
            candidates_per_result: make this many results per result returned, rank them and return the best
                ``num_images_per_prompt`` of each edit (needs the CLIP parts). Default: the checkpoint's
                ``default_candidates_per_result``.
            restart_at: at this fraction of the run, each edit's results below its best restart from copies of it
                (``RestartFromBestCallback``; ranked as the results are), so that the rest of the run is spent on
                what is going right; 0 = no restart (the paper). Default: the checkpoint's ``default_restart_at``.
            eta: DDIM's stochasticity (0 deterministic, 1 as much noise as DDPM); schedulers without it ignore it.
            mixed_precision: "bf16" or "fp16" runs the UNet and CLIP under autocast; default: the pipeline's
                ``default_mixed_precision`` (set by ``prepare_with(accelerator)``), else "no".
            generator: one generator for the whole batch, or one per result made (edit-major: the first
                ``num_images_per_prompt * candidates_per_result`` serve the first edit, and so on). With one per
                result, each edit's results equal those of a call for that edit alone with its generators.
            output_type: "pil", "np" (floats in [0, 1], (n, H, W, 3)) or "pt" ((n, 3, H, W) in [0, 1]); "np" and
                "pt" need every input of one size. "latent": the final samples at the UNet's resolution, in
                generation order (not ranked, not pasted), scores None.
            return_dict: return a ``BlendedDiffusionPipelineOutput`` rather than a tuple.
            callback_on_step_end: called after every step as ``fn(pipe, step, t, tensors) -> tensors``: a plain
                function (given ``callback_on_step_end_tensor_inputs``), a ``PipelineCallback`` or
                ``MultiPipelineCallbacks``. With ``blend`` on, a ``BlendCallback`` runs first unless this holds one.
                Setting ``pipe._interrupt = True`` stops after that step; the samples so far are ranked and pasted.
            callback_on_step_end_tensor_inputs: tensors handed to a plain-function callback.

        Returns:
            ``BlendedDiffusionPipelineOutput`` (or ``(images, scores)``): ``num_images_per_prompt`` results per
            edit, edits in input order, each edit's best first.
        """
        # 0. The checkpoint's defaults for what is not given; every input checked before any work.
        settings = self._settings(call_arguments(locals()))
        prompts, images, masks = self._edits(prompt, image, mask_image)
        callbacks = self._step_end_callbacks(
            settings.blend, callback_on_step_end, callback_on_step_end_tensor_inputs, settings.restart_at
        )
        self.check_inputs(prompts, generator, callbacks, settings)
        sources, regions = self._edit_regions(images, masks, settings)
        precision, device = settings.mixed_precision, self._execution_device
        results_made, self._interrupt = settings.results_made, False

        # 1. Each edit's region (a crop around the mask of a larger image, at the UNet's resolution), one row per
        #    result, the loss that guides, and the ranking (by the guidance, or the ranking CLIP).
        model_image = torch.cat([r.image for r in regions]).repeat_interleave(results_made, 0).to(device)
        model_mask = torch.cat([r.mask for r in regions]).repeat_interleave(results_made, 0).to(device)
        guidance = self.guidance if self.guidance is not None else self._clip_guidance()
        target_prompts = [p for p in prompts for _ in range(results_made)]
        loss = GuidanceLoss(
            guidance=guidance,
            target=guidance.prepare(target_prompts, device),
            mask=model_mask,
            augmentation=self.augmentation,
            num_augmentations=settings.num_augmentations,
            clip_guidance_scale=settings.clip_guidance_scale,
            range_loss_scale=settings.range_loss_scale,
            clip_input=settings.clip_input,
            clip_view=settings.clip_view,
            guidance_area_reference=settings.guidance_area_reference,
            background_loss=self._background_loss(settings.background_loss) if settings.background_loss_scale else None,
            background_loss_scale=settings.background_loss_scale,
            source=model_image,
            generator=generator,
        )
        self._ranking = self._ranking_for(
            guidance, loss.target, target_prompts, settings, model_image, model_mask, regions, sources
        )

        # 2. The part of the schedule to run, from the input (its masked region filled from around it, if asked).
        timesteps = self._timesteps(settings.num_inference_steps, settings.strength, device)
        self._num_timesteps = len(timesteps)
        start = fill_from_surround(model_image, model_mask) if settings.masked_start == "surround" else model_image

        # 3. Denoise: each step guided by the loss's gradient (on the steps chosen), blended, the callbacks after.
        channels_stepped = None if self._scheduler_uses_learned_variance() else model_image.shape[1]
        alphas_cumprod = self.scheduler.alphas_cumprod.to(device)

        def predict(sample: torch.Tensor, t: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            guided = is_guided_step(i, len(timesteps), settings.guidance_every, settings.guidance_end)
            with self._autocast(precision, device), gradients_for_samples_only(self.unet, self.clip_model):
                noise_pred, pred_original_sample = guided_noise_prediction(
                    lambda x: self.unet(x.to(self.unet.dtype), t).sample,
                    sample,
                    alphas_cumprod[t].float(),
                    loss if guided else None,
                    settings.backprop_through_unet,
                )
            return noise_pred[:, :channels_stepped], pred_original_sample

        latents = self.denoise(
            predict, start, model_image, model_mask, timesteps, generator, settings.eta, callbacks, settings.blend_noise
        )

        # 4. Rank each edit's results, then back to each input's size with its exact pixels outside the mask.
        if settings.output_type == "latent":
            return self._latent_output(latents, settings, return_dict)
        return self._ranked_output(latents.clamp(-1, 1), regions, sources, settings, return_dict)

    def _modules_run_every_step(self) -> dict[str, torch.nn.Module]:
        """The UNet and CLIP's image tower: each step runs both forward and backward."""
        return {"unet": self.unet, "clip_model.vision_model": self.clip_model.vision_model}

    def _scheduler_uses_learned_variance(self) -> bool:
        """True for schedulers (DDPM) configured to read the UNet's extra variance channels.

        A config copied by ``from_config`` keeps ``variance_type`` even where the new class ignores it (DDIM).
        """
        accepts = "variance_type" in inspect.signature(type(self.scheduler).__init__).parameters
        return accepts and self.scheduler.config.get("variance_type") in LEARNED_VARIANCE

    def _clip_guidance(self, clip_model: CLIPModel | None = None) -> CLIPGuidance:
        """``D_CLIP`` from the components: the guiding CLIP, or ``clip_model`` with the same tokenizer and
        feature extractor."""
        clip_model = self.clip_model if clip_model is None else clip_model
        if clip_model is None:
            raise ValueError("no guidance: the pipeline has no clip_model; pass CLIP parts or set pipe.guidance")
        return CLIPGuidance(clip_model, self.tokenizer, self.feature_extractor)

    def _background_loss(self, choice: BackgroundLossName | BackgroundLoss) -> BackgroundLoss:
        """The ``D_bg`` asked for; LPIPS is loaded once, on first use."""
        if callable(choice):
            return choice
        if choice == "mse":
            return mse_outside
        if self._lpips_loss is None:
            self._lpips_loss = BackgroundPreservationLoss.pretrained()
        return self._lpips_loss

    def _model_resolution(self) -> tuple[int, int]:
        size = self.unet.config.sample_size
        return (size, size) if isinstance(size, int) else tuple(size)

    def check_inputs(
        self,
        prompts: list[Any],
        generator: Generators,
        callbacks: list[tuple[StepEndCallback, list[str]]],
        settings: dict[str, Any],
    ) -> None:
        """Raise ``ValueError``/``TypeError`` saying what is wrong and what is expected; ``settings`` are the
        call's (already checked against the settings table)."""
        self._check_call(prompts, generator, callbacks, settings)

    @staticmethod
    def check_scheduler(scheduler: Any) -> None:
        """Refuse schedulers the guidance cannot drive: it needs ``alphas_cumprod`` on unscaled samples."""
        name = type(scheduler).__name__
        for attribute in ("alphas_cumprod", "add_noise", "step", "set_timesteps"):
            if not hasattr(scheduler, attribute):
                raise ValueError(
                    f"{name} has no `{attribute}`; use a variance-preserving diffusers scheduler such as "
                    "DDPMScheduler or DDIMScheduler"
                )
        if float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0:
            raise ValueError(
                f"{name} works on sigma-scaled samples (init_noise_sigma != 1), which x0_hat from alphas_cumprod "
                "does not describe; use DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler or similar"
            )
        prediction = scheduler.config.get("prediction_type", "epsilon")
        if prediction != "epsilon":
            raise ValueError(f"{name} is configured for prediction_type={prediction!r}; the UNet must predict epsilon")
