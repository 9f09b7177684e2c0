"""The denoising loop, once, and what both pipelines do the same way around it: the call's settings and edits,
the part of the schedule to run, the blend level of each step, the step-end callbacks, ranking and the output.

Pixel (``BlendedDiffusionPipeline``) and latent (``BlendedLatentDiffusionPipeline``) editing differ only in how a
step's noise is predicted (CLIP-guided, or classifier-free), in what a sample is (pixels, or a VAE's latents) and
so in how results are decoded; each pipeline's ``__call__`` names those parts and calls ``denoise``.
"""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from blended_pipeline.blending import BlendCallback
from blended_pipeline.denoiser_vote import reranked, vote_pool
from blended_pipeline.guidance import Guidance
from blended_pipeline.image_io import ImageInput, load_mask, load_source, to_output
from blended_pipeline.ranking import Ranking, Rivals
from blended_pipeline.region import EditRegion, as_unit_float, ranking_views
from blended_pipeline.restart import RestartFromBestCallback, draws_noise, sampler_words, to_draw_noise
from blended_pipeline.rivals import rival_groups, rival_rounds
from blended_pipeline.settings import (
    BY_ARGUMENT,
    BY_CHECKPOINT,
    MixedPrecision,
    OutputType,
    check_image_size,
    check_prompt,
    check_settings,
    idle_ranking_defaults,
    idle_rankings,
    idle_rankings_asked,
    resolve_settings,
    results_made,
    steps_run,
)

Generators = torch.Generator | list[torch.Generator] | None
StepEndCallback = Callable[[Any, int, Any, dict[str, torch.Tensor]], dict[str, torch.Tensor]]
Predict = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor | None]]
"""A family's model part: ``(sample, t, step index) -> (the prediction to step with, the predicted clean sample or
None)``."""


@dataclass
class BlendedPipelineOutput(BaseOutput):
    """Results, each edit's best first (edits in input order), their scores (higher = a better match; None where
    the pipeline has nothing to rank with, and the results keep their generation order), and the settings the call
    ran with (the checkpoint's defaults filled in)."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    scores: list[float] | None
    settings: dict[str, Any] | None = None


class CallSettings(dict):
    """A call's settings by argument name, read as attributes too (``settings.eta``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error

    @property
    def results_made(self) -> int:
        """``settings.results_made`` of these settings."""
        return results_made(self)


def call_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """The settings among a ``__call__``'s arguments (its ``locals()``), by name: those in the settings table."""
    return {name: value for name, value in arguments.items() if name in BY_ARGUMENT}


class BlendedPipelineMixin:
    """The shared parts of a blended-editing ``DiffusionPipeline``. A pipeline sets ``kind`` (which settings of the
    table it takes) and ``_callback_tensor_inputs``, and defines ``_model_resolution``, ``_clip_guidance`` (None
    where it has no CLIP), ``check_scheduler`` and ``_modules_run_every_step`` (what ``compile`` compiles)."""

    _callback_tensor_inputs: list[str]
    kind: str  # "pixel" or "latent": which settings of the table the pipeline takes
    default_mixed_precision: MixedPrecision = "no"
    _num_timesteps = 0
    _interrupt = False
    _ranking: Ranking | None = None

    @property
    def num_timesteps(self) -> int:
        """Denoising steps in the current (or last) call."""
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Set ``pipe._interrupt = True`` in a step-end callback to stop after that step (diffusers' convention)."""
        return self._interrupt

    @property
    def ranking(self) -> Ranking | None:
        """The current (or last) call's ranking: for step-end callbacks that rank the samples mid-run as the
        results will be ranked (``RestartFromBestCallback``); None where the pipeline has no CLIP to rank with."""
        return self._ranking

    def prepare_with(self, accelerator: Any) -> Any:
        """Adopt an ``accelerate.Accelerator``'s device and mixed precision."""
        self.to(accelerator.device)
        self.default_mixed_precision = accelerator.mixed_precision
        return self

    def compile(self, **options: Any) -> list[str]:
        """``torch.compile`` the networks that every step runs (``_modules_run_every_step``). Results are
        unchanged; the first call of each new shape compiles (a minute or more on a CPU), and later calls run the
        compiled code. Where no compiler is available it warns and leaves the models eager.

        Args:
            options: passed to ``torch.compile`` (``mode``, ``dynamic``, ...).

        Returns:
            the names of the compiled modules (empty when nothing could be compiled).
        """
        missing = missing_compiler(self.device)
        if missing:
            warnings.warn(f"torch.compile needs {missing}; the pipeline stays eager", RuntimeWarning, stacklevel=2)
            return []
        modules = self._modules_run_every_step()
        for module in modules.values():
            module.compile(**options)
        return list(modules)

    def _register(self, arguments: dict[str, Any]) -> None:
        """Keep the constructor's ``arguments`` (its ``locals()``): the components as modules; the checkpoint's own
        defaults (checked) and any other plain value (a family's flags) in the config, saved in
        ``model_index.json``: how much of the input a strength keeps, and what works, depend on the model and its
        noise schedule."""
        check_ranking_clip(arguments["ranking_clip_model"], arguments["clip_model"])
        components = inspect.signature(type(self).__init__).parameters
        plain = (bool, int, float, str)
        config = {
            name: arguments[name]
            for name in components
            if name in BY_CHECKPOINT or (name in arguments and isinstance(arguments[name], plain))
        }
        for name, value in config.items():
            if name in BY_CHECKPOINT:
                BY_CHECKPOINT[name].check(value, name)
        self.register_to_config(**config)
        self.register_modules(
            **{
                name: arguments[name]
                for name in components
                if name in arguments and name not in config and name != "self"
            }
        )

    def _settings(self, arguments: dict[str, Any]) -> CallSettings:
        """The call's settings, each not given taking the checkpoint's default (``model_index.json``) or the
        table's, mixed precision the pipeline's own (``prepare_with``); checked against the table. A checkpoint's
        ranking defaults give way where they cannot act (no CLIP parts, latents asked for, or a restart under a
        sampler that draws no noise): a default must not make a plain call fail."""
        settings = CallSettings(self.resolved_settings(arguments))
        settings["mixed_precision"] = settings.mixed_precision or self.default_mixed_precision
        check_settings(**settings)
        return settings

    def resolved_settings(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Every setting a call given ``arguments`` runs with, by argument name (``resolve_settings``), where a
        checkpoint's ranking defaults give way where they cannot act (``idle_ranking_defaults``): what the front
        ends show before a call and what the call runs with are the same."""
        settings = resolve_settings(self.kind, self.config, arguments)
        return idle_ranking_defaults(self.kind, settings, arguments, self._idle_rankings(settings))

    def _idle_rankings(self, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """The ranking roles that cannot act in a call with ``settings`` (``settings.idle_rankings``)."""
        noise = draws_noise(self.scheduler, settings["eta"])
        return idle_rankings(self._can_rank(), settings["output_type"], noise)

    def _can_rank(self) -> bool:
        """Whether the pipeline has something to rank results with: its CLIP parts, a ranking CLIP or (a pixel
        pipeline's) ``guidance``."""
        return any(getattr(self, name, None) is not None for name in ("clip_model", "ranking_clip_model", "guidance"))

    @staticmethod
    def _edits(prompt: Any, image: Any, mask_image: Any) -> tuple[list[str], list[ImageInput], list[ImageInput]]:
        """The call's edits as three lists of one length: a single prompt, image or mask serves every edit."""
        given = {"prompt": prompt, "image": image, "mask_image": mask_image}
        lengths = {name: len(value) for name, value in given.items() if isinstance(value, (list, tuple))}
        count = max(lengths.values(), default=1)
        if any(length != count for length in lengths.values()):
            raise ValueError(f"prompt, image and mask_image lists must have one length, got {lengths}")
        if count == 0:
            raise ValueError("prompt, image and mask_image lists are empty: give at least one edit")
        prompts, images, masks = (
            list(value) if isinstance(value, (list, tuple)) else [value] * count for value in given.values()
        )
        return prompts, images, masks

    def _edit_regions(
        self, images: list[ImageInput], masks: list[ImageInput], settings: CallSettings
    ) -> tuple[list[torch.Tensor], list[EditRegion]]:
        """Each edit's input as stored (``load_source``), checked, and its region: the (feathered) mask's crop at
        the model's resolution (``_model_resolution``, which each pipeline defines), zoomed into as ``zoom`` asks."""
        sources = [load_source(picture) for picture in images]
        for source in sources:
            check_image_size(source.shape[-1], source.shape[-2], "image")
        loaded = [load_mask(m, tuple(s.shape[-2:])) for m, s in zip(masks, sources, strict=True)]
        if settings.output_type in ("np", "pt") and len({s.shape for s in sources}) > 1:
            raise ValueError(
                f"output_type={settings.output_type!r} needs every image of one size; use output_type='pil'"
            )
        resolution = self._model_resolution()
        regions = [
            EditRegion.around(source, mask, resolution, settings.crop_margin, settings.mask_blur, settings.zoom)
            for source, mask in zip(sources, loaded, strict=True)
        ]
        return sources, regions

    def _check_call(self, prompts: list[str], generator: Generators, callbacks: list, settings: CallSettings) -> None:
        """The prompts, the steps against the schedule's training length, the generator count, the callbacks'
        tensor names and the scheduler (the settings themselves are checked by ``check_settings``)."""
        for prompt in prompts:
            check_prompt(prompt)
        num_inference_steps = settings["num_inference_steps"]
        trained = self.scheduler.config.get("num_train_timesteps")
        if trained is not None and num_inference_steps > trained:
            raise ValueError(
                f"num_inference_steps={num_inference_steps} is more than the {trained} timesteps the scheduler (and "
                "the UNet) was trained with; use at most that many"
            )
        results = len(prompts) * settings.results_made
        if isinstance(generator, list) and len(generator) != results:
            raise ValueError(
                f"got a list of {len(generator)} generators for {len(prompts)} edit(s) x {settings.results_made} "
                f"results made (num_images_per_prompt x candidates_per_result); pass one generator, or one per "
                f"result made ({results})"
            )
        unknown = [name for _, names in callbacks for name in names if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"callback tensor inputs {unknown} are not offered; choose from {self._callback_tensor_inputs}"
            )
        for setting in idle_rankings_asked(self.kind, settings, self._idle_rankings(settings)):
            name, default = setting.argument_for(self.kind), setting.default_for(self.kind)
            if not self._can_rank():
                why = "ranks results, which needs CLIP parts to rank with; load the pipeline with them, or"
            elif setting.ranks == "results":
                why = "ranks results, and output_type='latent' returns the samples unranked;"
            else:
                why = (
                    f"restarts results from copies of the best, and {sampler_words(self.scheduler, settings.eta)} "
                    f"draws no noise, so the copies would stay near-copies; {to_draw_noise(self.scheduler)}, or"
                )
            raise ValueError(f"{name}={settings[name]!r} {why} pass {name}={default!r}")
        self.check_scheduler(self.scheduler)

    def _ranking_for(
        self,
        guidance: Guidance | None,
        target: Any,
        prompts: list[str],
        settings: CallSettings,
        image: torch.Tensor,
        mask: torch.Tensor,
        regions: list[EditRegion],
        sources: list[torch.Tensor],
        to_pixels: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> Ranking | None:
        """The call's ranking: by ``guidance`` toward ``target`` (what it prepared of ``prompts``, one per result;
        None: nothing to rank with), or by the ranking CLIP when the pipeline has one, with the prompts' rivals.
        ``image`` and ``mask`` are the rows' input and mask in pixels; where an edit's crop was zoomed into, its
        results are ranked in its view (``region.ranking_views``)."""
        if self.ranking_clip_model is not None:
            guidance = self._clip_guidance(self.ranking_clip_model)
            target = guidance.prepare(prompts, image.device)
        if guidance is None:
            return None
        rounds, present = rival_rounds(prompts, rival_groups(settings.rank_rivals))
        targets = tuple(guidance.prepare(r, image.device) for r in rounds)
        rivals = Rivals(targets, torch.tensor(present)) if rounds else None
        pasted = settings.get("reconstruction") != "none"
        image, mask, to_view = ranking_views(regions, sources, settings.results_made, image, mask)
        return Ranking(
            guidance,
            target,
            settings.rank_by,
            settings.results_made,
            settings.rank_border_weight,
            image,
            mask,
            to_pixels,
            pasted,
            rivals,
            to_view,
        )

    def denoise(
        self,
        predict: Predict,
        start: torch.Tensor,
        clean: torch.Tensor,
        mask: torch.Tensor,
        timesteps: torch.Tensor,
        generator: Generators,
        eta: float,
        callbacks: list[tuple[StepEndCallback, list[str]]],
        blend_noise: str = "fresh",
        **tensors: torch.Tensor,
    ) -> torch.Tensor:
        """Algorithm 2's loop: ``start`` noised to the first timestep, then for each step the model's prediction,
        the scheduler's step and the step-end callbacks (blending with ``clean`` noised to the new level where
        ``mask`` is 0, first; with fresh noise, or the start's for ``blend_noise="initial"``). ``tensors`` are
        offered to the callbacks beside the loop's own."""
        noise = randn_tensor(tuple(start.shape), generator=generator, device=start.device)
        reused = noise if blend_noise == "initial" else None
        latents = self._noised(start, noise, timesteps[:1].repeat(start.shape[0]))
        extra_step_kwargs = self._extra_step_kwargs(generator, eta)
        for i, t in enumerate(self.progress_bar(timesteps)):
            noise_pred, pred_original_sample = predict(latents, t, i)
            latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs).prev_sample
            if callbacks:
                offered = {
                    "latents": latents,
                    "noised_image": self._noised_input(clean, timesteps, i, generator, reused),
                    "mask": mask,
                    "image": clean,
                    "noise_pred": noise_pred,
                    "pred_original_sample": pred_original_sample,
                    **tensors,
                }
                latents = self._run_callbacks(callbacks, i, t, offered)
            if self.interrupt:
                break
        return latents

    def _latent_output(self, latents: torch.Tensor, settings: CallSettings, return_dict: bool) -> Any:
        """``output_type="latent"``: the samples of the pipeline's space at the model's resolution, (N, C, h, w) in
        generation order (ranking and the paste need pixels), to chain another pipeline (Flux's unpacked, where
        diffusers' Flux pipelines give them packed)."""
        self.maybe_free_model_hooks()
        if not return_dict:
            return latents, None
        return BlendedPipelineOutput(images=latents, scores=None, settings=settings)

    def _ranked_output(
        self,
        results: torch.Tensor,
        regions: list[EditRegion],
        sources: list[torch.Tensor],
        settings: CallSettings,
        return_dict: bool,
        exact: bool = True,
        reconstruct: Callable[[torch.Tensor], torch.Tensor] | None = None,
        vote: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> BlendedPipelineOutput | tuple:
        """Each edit's results (in [-1, 1], at the model's resolution) ranked as they are returned when there is a
        ranking (``vote``: the denoiser's votes of the rows ``(edits, pool)``, which re-rank each edit's pool when
        ``rank_denoiser_weight`` asks), the best ``num_images_per_prompt`` of each edit's kept (``reconstruct``:
        made again from those rows' indices, in the same order), then back in each input's size with the input's
        exact pixels outside the mask (not ``exact``: over their whole crop)."""
        made, returned = settings.results_made, settings.num_images_per_prompt
        order, scores = torch.arange(results.shape[0], device=results.device), None
        if self._ranking is not None:
            with self._autocast(settings.mixed_precision, results.device):
                order, ranked_scores = self._ranking.of_results(results)
            weight, pool = settings.get("rank_denoiser_weight", 0.0), vote_pool(made, returned)
            if vote is not None and weight > 0 and pool > 1:
                votes = vote(order.view(-1, made)[:, :pool])
                order, ranked_scores = reranked(order, ranked_scores, votes, weight, made, pool)
            scores = [float(s) for s in ranked_scores.view(-1, made)[:, :returned].flatten()]
        kept = order.view(-1, made)[:, :returned].flatten()
        ranked = (results[kept] if reconstruct is None else reconstruct(kept)).split(returned)
        self.maybe_free_model_hooks()
        outputs = self._pasted_output(regions, ranked, sources, settings["output_type"], exact)
        if not return_dict:
            return outputs, scores
        return BlendedPipelineOutput(images=outputs, scores=scores, settings=settings)

    def _timesteps(self, num_inference_steps: int, strength: float, device: torch.device) -> torch.Tensor:
        """The last ``strength`` of the schedule (``_schedule``'s)."""
        self.scheduler.set_timesteps(**self._schedule(num_inference_steps), device=device)
        begin = (num_inference_steps - steps_run(num_inference_steps, strength)) * self.scheduler.order
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(begin)
        return self.scheduler.timesteps[begin:]

    def _schedule(self, num_inference_steps: int) -> dict[str, Any]:
        """The scheduler's ``set_timesteps`` arguments for a run of ``num_inference_steps``."""
        return {"num_inference_steps": num_inference_steps}

    def _noised_input(
        self,
        clean: torch.Tensor,
        timesteps: torch.Tensor,
        step_index: int,
        generator: Generators,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The input at the noise level of the sample after step ``step_index`` (with ``noise``, else fresh
        noise); the clean input after the last."""
        if step_index + 1 == len(timesteps):
            return clean
        if noise is None:
            noise = randn_tensor(tuple(clean.shape), generator=generator, device=clean.device, dtype=clean.dtype)
        return self._noised(clean, noise, timesteps[step_index + 1 : step_index + 2])

    def _noised(self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``clean`` brought to the noise level of ``timesteps`` with ``noise``: ``scale_noise`` for a flow-matching
        scheduler (which mixes toward the noise), ``add_noise`` for the others."""
        if hasattr(self.scheduler, "scale_noise"):
            return self.scheduler.scale_noise(clean, timesteps, noise)
        return self.scheduler.add_noise(clean, noise, timesteps)

    def _extra_step_kwargs(self, generator: Generators, eta: float) -> dict[str, Any]:
        """The generator, DDIM's ``eta`` and ``use_clipped_model_output=True``, as far as ``step`` takes them.

        Guidance pushes ``x0_hat`` far outside [-1, 1]. DDIM clips ``x0_hat`` but, unless told otherwise, points
        its next sample along the unclipped noise, which carries the whole guidance gradient into the sample as
        noise (measured on the shapes world: no edit succeeded). Recomputing the noise from the clipped
        ``x0_hat`` keeps the step bounded, as DDPM's is. Without ``clip_sample`` (latent schedulers) it changes
        nothing.
        """
        accepted = inspect.signature(self.scheduler.step).parameters
        offered = {"generator": generator, "eta": eta, "use_clipped_model_output": True}
        return {name: value for name, value in offered.items() if name in accepted}

    @staticmethod
    def _step_end_callbacks(
        blend: bool, callback: Any, tensor_inputs: Sequence[str], restart_at: float = 0.0
    ) -> list[tuple[StepEndCallback, list[str]]]:
        """The callbacks to run after each step, in order, each with the tensors it is handed.

        A plain ``BlendCallback`` comes first when ``blend`` asks for it and the user's callback holds none of its
        own; a ``RestartFromBestCallback`` last when ``restart_at`` asks for one and the user's holds none.
        """
        chain: list[tuple[StepEndCallback, list[str]]] = []
        if blend and not contains_callback(callback, BlendCallback):
            chain.append((BlendCallback(), BlendCallback.tensor_inputs))
        if not blend and contains_callback(callback, BlendCallback):
            raise ValueError("blend=False but callback_on_step_end contains a BlendCallback; drop one of them")
        if isinstance(callback, (PipelineCallback, MultiPipelineCallbacks)):
            chain.append((callback, list(callback.tensor_inputs)))
        elif callback is not None:
            if not callable(callback):
                raise TypeError(f"callback_on_step_end must be callable, got {type(callback).__name__}")
            chain.append((callback, list(tensor_inputs)))
        if restart_at > 0 and not contains_callback(callback, RestartFromBestCallback):
            chain.append((RestartFromBestCallback(restart_at), RestartFromBestCallback.tensor_inputs))
        return chain

    def _run_callbacks(
        self,
        callbacks: list[tuple[StepEndCallback, list[str]]],
        step_index: int,
        timestep: torch.Tensor,
        tensors: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """Each callback in turn on the tensors it names; what one returns, the next sees. The new latents."""
        for callback, names in callbacks:
            returned = callback(self, step_index, timestep, {name: tensors[name] for name in names})
            tensors.update({name: value for name, value in (returned or {}).items() if name in tensors})
        return tensors["latents"]

    @staticmethod
    def _autocast(precision: MixedPrecision, device: torch.device) -> Any:
        if precision == "no":
            return nullcontext()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        return torch.autocast(device_type=device.type, dtype=dtype)

    @staticmethod
    def _pasted_output(
        regions: list[EditRegion],
        ranked: Sequence[torch.Tensor],
        sources: list[torch.Tensor],
        output_type: OutputType,
        exact: bool = True,
    ) -> list[PIL.Image.Image] | np.ndarray | torch.Tensor:
        """Each edit's results (in [-1, 1], at the model's resolution) back in its input (by the mask, or the whole
        crop when not ``exact``), as ``output_type``; PIL images one at a time and in the input's 8 bits where it
        has them, so that a large input is not copied as floats."""
        if output_type != "pil":
            edited = [
                region.paste(r, as_unit_float(s), exact) for region, r, s in zip(regions, ranked, sources, strict=True)
            ]
            return to_output(torch.cat(edited), output_type)
        return [
            to_output(region.paste(result[None], source, exact), "pil")[0]
            for region, results, source in zip(regions, ranked, sources, strict=True)
            for result in results
        ]


def check_ranking_clip(ranking_clip_model: Any, clip_model: Any) -> None:
    """Refuse a ranking CLIP that cannot read what the guiding CLIP's tokenizer and feature extractor make."""
    if ranking_clip_model is None or clip_model is None:
        return
    for part, setting in (("vision_config", "image_size"), ("text_config", "vocab_size")):
        ranking = getattr(getattr(ranking_clip_model.config, part), setting)
        guiding = getattr(getattr(clip_model.config, part), setting)
        if ranking != guiding:
            raise ValueError(
                f"ranking_clip_model's {setting} is {ranking}, clip_model's {guiding}: the ranking CLIP shares the "
                "tokenizer and feature extractor, so it must take the same image size and vocabulary"
            )


def contains_callback(callback: Any, kind: type) -> bool:
    """Whether a callback (or any callback inside a ``MultiPipelineCallbacks``) is a ``kind``."""
    if isinstance(callback, kind):
        return True
    return any(contains_callback(c, kind) for c in getattr(callback, "callbacks", ()))


def missing_compiler(device: torch.device) -> str | None:
    """What ``torch.compile``'s default backend lacks on ``device`` (a C++ compiler, Triton), or None."""
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "Triton (pip install triton) on a GPU"
    if device.type == "cpu" and not any(shutil.which(name) for name in ("g++", "c++", "clang++")):
        return "a C++ compiler (g++ or clang++) on the PATH for the CPU"
    return None
