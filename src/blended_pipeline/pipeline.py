"""``BlendedDiffusionPipeline``: text-driven editing of an image region (Avrahami et al., CVPR 2022)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, UNet2DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPImageProcessor, CLIPModel, PreTrainedTokenizerBase

from blended_pipeline.augment import Augmentation, ProjectiveAugmentation
from blended_pipeline.blending import BlendCallback, contains_blending
from blended_pipeline.guidance import BackgroundPreservationLoss, CLIPGuidance, GuidanceObjective, range_loss
from blended_pipeline.image_io import (
    OUTPUT_TYPES,
    ImageInput,
    OutputType,
    crop_box,
    feather,
    load_image,
    load_mask,
    paste,
    to_output,
    to_resolution,
)
from blended_pipeline.ranking import RANK_BY, RankBy, rank

Generators = torch.Generator | list[torch.Generator] | None
MixedPrecision = Literal["no", "fp16", "bf16"]
LEARNED_VARIANCE = ("learned", "learned_range")
DEFAULT_STRENGTH = 0.75  # the paper's: the first 25 of 100 steps skipped, on a linear noise schedule
DEFAULT_SCRIBBLE_STRENGTH = 0.5  # half the schedule: on a linear schedule the strokes' colours survive


def check_strength(name: str, value: float) -> None:
    """A strength is a fraction of the schedule: in (0, 1]."""
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value}")


@dataclass
class BlendedDiffusionPipelineOutput(BaseOutput):
    """Results best first, and their scores (higher = the masked region matches the prompt better)."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    scores: list[float]


class BlendedDiffusionPipeline(DiffusionPipeline):
    r"""Edit the masked region of an image to match a prompt; keep the rest exactly (Algorithm 2).

    Components:
        unet: a ``UNet2DModel`` predicting the noise (3 output channels, or 6 with a learned variance).
        scheduler: a variance-preserving scheduler with ``alphas_cumprod`` (DDPM, DDIM, DPM-Solver, ...).
        clip_model, tokenizer, feature_extractor: the CLIP that guides and ranks.

    Config (saved in ``model_index.json``; how much of the input survives a strength depends on the noise
    schedule, at 0.75 a cosine schedule keeps 38% of its amplitude and a linear one 6%, so each checkpoint
    carries its own):
        default_strength: the ``strength`` of a call that names none.
        scribble_strength: the strength for scribble-guided edits (lower: the strokes must survive the noise).

    Pluggable parts (plain attributes): ``guidance`` (the objective; CLIP by default), ``augmentation`` (the
    extending augmentations) and ``background_loss`` (Algorithm 1's ``D_bg``, LPIPS loaded on first use).
    """

    model_cpu_offload_seq = "clip_model->unet"
    _callback_tensor_inputs = ["latents", "noised_image", "mask", "image", "noise_pred", "pred_original_sample"]

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: SchedulerMixin,
        clip_model: CLIPModel,
        tokenizer: PreTrainedTokenizerBase,
        feature_extractor: CLIPImageProcessor,
        default_strength: float = DEFAULT_STRENGTH,
        scribble_strength: float = DEFAULT_SCRIBBLE_STRENGTH,
    ) -> None:
        super().__init__()
        check_strength("default_strength", default_strength)
        check_strength("scribble_strength", scribble_strength)
        self.register_to_config(default_strength=default_strength, scribble_strength=scribble_strength)
        self.register_modules(
            unet=unet,
            scheduler=scheduler,
            clip_model=clip_model,
            tokenizer=tokenizer,
            feature_extractor=feature_extractor,
        )
        self.custom_guidance: GuidanceObjective | None = None
        self.augmentation: Augmentation = ProjectiveAugmentation()
        self.background_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        self.default_mixed_precision: MixedPrecision = "no"
        self._num_timesteps = 0

    @property
    def guidance(self) -> GuidanceObjective:
        """The objective that guides and ranks: ``custom_guidance`` if set, else CLIP from the components."""
        return self.custom_guidance or CLIPGuidance(self.clip_model, self.tokenizer, self.feature_extractor)

    @property
    def num_timesteps(self) -> int:
        """Denoising steps in the current (or last) call."""
        return self._num_timesteps

    def prepare_with(self, accelerator: Any) -> BlendedDiffusionPipeline:
        """Adopt an ``accelerate.Accelerator``'s device and mixed precision."""
        self.to(accelerator.device)
        self.default_mixed_precision = accelerator.mixed_precision
        return self

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        image: ImageInput,
        mask_image: ImageInput,
        num_inference_steps: int = 100,
        strength: float | None = None,
        num_images_per_prompt: int = 4,
        clip_guidance_scale: float = 1000.0,
        num_augmentations: int = 8,
        range_loss_scale: float = 50.0,
        background_loss_scale: float = 0.0,
        blend: bool = True,
        backprop_through_unet: bool = True,
        clip_input: Literal["x0_hat", "mixed"] = "x0_hat",
        mask_blur: float = 0.0,
        crop_margin: float = 0.25,
        rank_by: RankBy = "both",
        eta: float = 0.0,
        mixed_precision: MixedPrecision | None = None,
        generator: Generators = None,
        output_type: OutputType = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> BlendedDiffusionPipelineOutput | tuple:
        r"""Edit ``image`` where ``mask_image`` is white so that the region matches ``prompt``.

        Args:
            prompt: what the masked region should show.
            image: the input; any size. The edit runs at the UNet's resolution and is pasted back.
            mask_image: white / 1 = edit, black / 0 = keep; thresholded at 0.5; the image's aspect ratio.
            num_inference_steps: steps of the full schedule; ``strength`` of them are run.
            strength: fraction of the schedule run, starting from the input noised to that level (1.0 = pure noise);
                default: the checkpoint's ``default_strength``.
            num_images_per_prompt: results to generate (one batch) and rank.
            clip_guidance_scale: weight of ``D_CLIP``, averaged over the augmented views.
            num_augmentations: views per result given to CLIP (the first untransformed).
            range_loss_scale: weight of the penalty on ``x0_hat`` outside [-1, 1].
            background_loss_scale: weight of ``D_bg`` (MSE + LPIPS outside the mask; Algorithm 1's lambda).
            blend: blend with the noised input after every step (Algorithm 2); False gives Algorithm 1.
            backprop_through_unet: take the guidance gradient through the UNet (exact); False treats the
                UNet's output as constant, which skips the UNet's backward pass (cheaper, less faithful).
            clip_input: "x0_hat" (the paper) or "mixed", ``x0_hat * sqrt(1 - abar) + x_t * (1 - sqrt(1 - abar))``
                (the authors' code).
            mask_blur: feather the mask by this many input pixels (outward); blending and the final paste then use
                the soft mask, so there is no hard seam. Pixels where the feathered mask is 0 stay exact.
            crop_margin: an image larger than the UNet is edited on a square crop around the mask's bounding box,
                grown by this fraction of the box's longer side on each side for context.
            rank_by: what the ranking scores: "masked" (the paper: the masked region alone), "whole" (the result
                with its context) or "both" (the sum; see ``ranking.rank`` and docs/method.md for the measurement).
            eta: DDIM's stochasticity (0 deterministic, 1 as much noise as DDPM); schedulers without it ignore it.
            mixed_precision: "bf16" or "fp16" runs the UNet and CLIP under autocast; default: the pipeline's
                ``default_mixed_precision`` (set by ``prepare_with(accelerator)``), else "no".
            generator: a generator, or one per result, for reproducible noise and augmentations.
            output_type: "pil", "np" (floats in [0, 1], (n, H, W, 3)) or "pt" ((n, 3, H, W) in [0, 1]).
            return_dict: return a ``BlendedDiffusionPipelineOutput`` rather than a tuple.
            callback_on_step_end: called after every step as ``fn(pipe, step, t, tensors) -> tensors``. Blending is
                itself such a callback: when ``blend`` is on and this contains no ``BlendCallback``, a default
                ``BlendCallback`` runs first.
            callback_on_step_end_tensor_inputs: tensors handed to a plain-function callback.

        Returns:
            ``BlendedDiffusionPipelineOutput`` (or ``(images, scores)``), best result first.
        """
        # 0. Check every input before any work.
        strength = self.config.default_strength if strength is None else strength
        callback = self._step_end_callback(blend, callback_on_step_end)
        tensor_inputs = getattr(callback, "tensor_inputs", callback_on_step_end_tensor_inputs)
        self.check_inputs(
            prompt,
            num_inference_steps,
            strength,
            num_images_per_prompt,
            num_augmentations,
            generator,
            output_type,
            tensor_inputs,
            clip_input,
            mask_blur,
            crop_margin,
            rank_by,
            eta,
        )
        precision = mixed_precision or self.default_mixed_precision
        source = load_image(image)
        mask = feather(load_mask(mask_image, tuple(source.shape[-2:])), mask_blur)
        background_loss = self._background_loss() if background_loss_scale > 0 else None
        device = self._execution_device

        # 1. Inputs at the UNet's resolution (a crop around the mask for a larger image), and the prompt.
        top, left, bottom, right = crop_box(mask, max(self._model_resolution()), crop_margin)
        region = (..., slice(top, bottom), slice(left, right))
        model_image, model_mask = to_resolution(source[region], mask[region], self._model_resolution())
        model_image, model_mask = model_image.to(device), model_mask.to(device)
        guidance = self.guidance
        target = guidance.prepare(prompt, device)

        # 2. The part of the schedule to run, and x_T: the input noised to its first timestep.
        timesteps = self._timesteps(num_inference_steps, strength, device)
        self._num_timesteps = len(timesteps)
        shape = (num_images_per_prompt, *model_image.shape[1:])
        noise = randn_tensor(shape, generator=generator, device=device)
        latents = self.scheduler.add_noise(model_image.expand(shape), noise, timesteps[:1].repeat(shape[0]))

        def objective(x0_hat: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
            """The loss whose gradient guides; summed over results so each result's gradient is its own."""
            judged = (
                x0_hat * (1 - alpha_bar).sqrt() + x_t * (1 - (1 - alpha_bar).sqrt())
                if clip_input == "mixed"
                else x0_hat
            )
            views = self.augmentation(judged * model_mask, num_augmentations, generator)
            clip_loss = guidance.loss(views, target).view(num_augmentations, -1).mean(dim=0)
            loss = clip_guidance_scale * clip_loss + range_loss_scale * range_loss(x0_hat)
            if background_loss is not None:
                loss = loss + background_loss_scale * background_loss(model_image, x0_hat, model_mask)
            return loss.sum()

        # 3. Denoise: guided step, then the step-end callbacks (blending).
        extra_step_kwargs = self._extra_step_kwargs(generator, eta)
        for i, t in enumerate(self.progress_bar(timesteps)):
            with self._autocast(precision, device):
                noise_pred, pred_original_sample = self._guided_noise_prediction(
                    latents, t, objective, backprop_through_unet
                )
            latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs).prev_sample
            if callback is not None:
                noised_image = self._noised_image(model_image, timesteps, i, generator, shape, device)
                available = {
                    "latents": latents,
                    "noised_image": noised_image,
                    "mask": model_mask,
                    "image": model_image,
                    "noise_pred": noise_pred,
                    "pred_original_sample": pred_original_sample,
                }
                outputs = callback(self, i, t, {name: available[name] for name in tensor_inputs})
                latents = outputs.pop("latents", latents)

        # 4. Rank by the objective (on the masked region, the whole result, or both), best first.
        results = latents.clamp(-1, 1)
        with self._autocast(precision, device):
            order, scores = rank(guidance, results, model_mask, target, rank_by)
        self.maybe_free_model_hooks()

        # 5. Back to the input's size; outside the mask, the input's exact pixels.
        edited = source.to(device).repeat(len(order), 1, 1, 1)
        edited[region] = paste(results[order], source[region], mask[region])
        images = to_output(edited, output_type)
        score_list = [float(s) for s in scores]
        if not return_dict:
            return images, score_list
        return BlendedDiffusionPipelineOutput(images=images, scores=score_list)

    def _guided_noise_prediction(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        objective: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        backprop_through_unet: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The UNet's output with its noise shifted by ``-sqrt(1 - abar_t) * g``, ``g = -grad_{x_t} loss``.

        This moves any epsilon-based step (DDPM's mean, DDIM's update) down the loss, and needs nothing of the
        scheduler but ``alphas_cumprod``. Returns the output to hand to ``scheduler.step`` and ``x0_hat``.
        """
        alpha_bar = self.scheduler.alphas_cumprod.to(latents.device)[t].float()
        channels = latents.shape[1]
        with torch.enable_grad():
            x_t = latents.detach().requires_grad_(True)
            unet_input = x_t if backprop_through_unet else x_t.detach()
            with nullcontext() if backprop_through_unet else torch.no_grad():
                model_output = self.unet(unet_input.to(self.unet.dtype), t).sample.float()
            noise = model_output[:, :channels]
            x0_hat = (x_t - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()
            gradient = torch.autograd.grad(objective(x0_hat, x_t, alpha_bar), x_t)[0]
        guided_noise = noise.detach() + (1 - alpha_bar).sqrt() * gradient
        if self._scheduler_uses_learned_variance():
            return torch.cat([guided_noise, model_output[:, channels:].detach()], dim=1), x0_hat.detach()
        return guided_noise, x0_hat.detach()

    def _scheduler_uses_learned_variance(self) -> bool:
        """True for schedulers (DDPM) configured to read the UNet's extra variance channels.

        A config copied by ``from_config`` keeps ``variance_type`` even where the new class ignores it (DDIM).
        """
        accepts = "variance_type" in inspect.signature(type(self.scheduler).__init__).parameters
        return accepts and self.scheduler.config.get("variance_type") in LEARNED_VARIANCE

    def _noised_image(
        self,
        image: torch.Tensor,
        timesteps: torch.Tensor,
        step_index: int,
        generator: Generators,
        shape: tuple[int, ...],
        device: torch.device,
    ) -> torch.Tensor:
        """The input at the noise level of the sample after step ``step_index``; the clean input after the last."""
        if step_index + 1 == len(timesteps):
            return image.expand(shape)
        noise = randn_tensor(shape, generator=generator, device=device)
        return self.scheduler.add_noise(image.expand(shape), noise, timesteps[step_index + 1 : step_index + 2])

    def _timesteps(self, num_inference_steps: int, strength: float, device: torch.device) -> torch.Tensor:
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        skipped = num_inference_steps - int(num_inference_steps * strength)
        begin = skipped * self.scheduler.order
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(begin)
        return self.scheduler.timesteps[begin:]

    def _step_end_callback(self, blend: bool, callback: Any) -> Any:
        """The user's callback, with the default blending in front when ``blend`` asks for it and none is there."""
        if not blend:
            if contains_blending(callback):
                raise ValueError("blend=False but callback_on_step_end contains a BlendCallback; drop one of them")
            return callback
        if contains_blending(callback):
            return callback
        if callback is None:
            return BlendCallback()
        if not isinstance(callback, (PipelineCallback, MultiPipelineCallbacks)):
            raise TypeError(
                "with blend=True a plain-function callback_on_step_end cannot be combined with blending; pass a "
                "PipelineCallback, or MultiPipelineCallbacks([BlendCallback(), your_callback])"
            )
        return MultiPipelineCallbacks([BlendCallback(), callback])

    def _background_loss(self) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        if self.background_loss is None:
            self.background_loss = BackgroundPreservationLoss.pretrained()
        return self.background_loss

    def _model_resolution(self) -> tuple[int, int]:
        size = self.unet.config.sample_size
        return (size, size) if isinstance(size, int) else tuple(size)

    def _extra_step_kwargs(self, generator: Generators, eta: float) -> dict[str, Any]:
        """The generator, DDIM's ``eta`` and ``use_clipped_model_output=True``, as far as ``step`` takes them.

        Guidance pushes ``x0_hat`` far outside [-1, 1]. DDIM clips ``x0_hat`` but, unless told otherwise, points
        its next sample along the unclipped noise, which carries the whole guidance gradient into the sample as
        noise (measured on the shapes world: no edit succeeded). Recomputing the noise from the clipped
        ``x0_hat`` keeps the step bounded, as DDPM's is.
        """
        accepted = inspect.signature(self.scheduler.step).parameters
        offered = {"generator": generator, "eta": eta, "use_clipped_model_output": True}
        return {name: value for name, value in offered.items() if name in accepted}

    @staticmethod
    def _autocast(precision: MixedPrecision, device: torch.device) -> Any:
        if precision == "no":
            return nullcontext()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        return torch.autocast(device_type=device.type, dtype=dtype)

    def check_inputs(
        self,
        prompt: Any,
        num_inference_steps: int,
        strength: float,
        num_images_per_prompt: int,
        num_augmentations: int,
        generator: Generators,
        output_type: str,
        tensor_inputs: Sequence[str],
        clip_input: str,
        mask_blur: float = 0.0,
        crop_margin: float = 0.25,
        rank_by: str = "both",
        eta: float = 0.0,
    ) -> None:
        """Raise ``ValueError``/``TypeError`` saying what is wrong and what is expected."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise ValueError("prompt is empty: describe what the masked region should show")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        check_strength("strength", strength)
        if int(num_inference_steps * strength) < 1:
            raise ValueError(
                f"strength={strength} of num_inference_steps={num_inference_steps} runs no step; raise either"
            )
        if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be an integer >= 1, got {num_images_per_prompt!r}")
        if not isinstance(num_augmentations, int) or num_augmentations < 1:
            raise ValueError(f"num_augmentations must be an integer >= 1, got {num_augmentations!r}")
        if isinstance(generator, list) and len(generator) != num_images_per_prompt:
            raise ValueError(
                f"got a list of {len(generator)} generators for num_images_per_prompt={num_images_per_prompt}; "
                "pass one generator, or one per image"
            )
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if clip_input not in ("x0_hat", "mixed"):
            raise ValueError(f"clip_input must be 'x0_hat' or 'mixed', got {clip_input!r}")
        if mask_blur < 0 or crop_margin < 0:
            raise ValueError(
                f"mask_blur and crop_margin must be >= 0 (pixels, fraction), got {mask_blur}, {crop_margin}"
            )
        if rank_by not in RANK_BY:
            raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
        if not 0 <= eta <= 1:
            raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: DDPM-like), got {eta}")
        unknown = [name for name in tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"callback tensor inputs {unknown} are not offered; choose from {self._callback_tensor_inputs}"
            )
        self.check_scheduler(self.scheduler)

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
