"""Speed/quality trade-offs, the paper's ablations, a RePaint peer and cost growth, on the shipped shapes model.

    python benchmarks/tradeoffs.py --out docs/figures/tradeoffs            # full: the published figures
    python benchmarks/tradeoffs.py --quick --out /tmp/tradeoffs            # under 10 minutes on a 2-core CPU
    python benchmarks/tradeoffs.py --smoke --out /tmp/smoke                # seconds; what the tests run

Quality is refereed by the shapes world's pixel judge on the edit set (never by CLIP). Writes PREFIX.json, a
markdown table PREFIX.md and plots PREFIX-pareto.png and PREFIX-cost.png.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from common import cli_defaults, provenance, upscale, write_results
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, RePaintPipeline, RePaintScheduler
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from blended_pipeline import SHAPES_CHECKPOINT, BlendCallback, BlendedDiffusionPipeline
from blended_pipeline.ranking import RANK_BY, rank
from blended_pipeline.shapes.edits import EditCase, edit_cases
from blended_pipeline.shapes.judge import judge
from blended_pipeline.shapes.training_utils import to_model_range

EDIT_SEED = 2024  # the same edit set as benchmarks/shapes_targets.py
SCHEDULERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler}
PARTS = ("sweep", "ablations", "repaint", "cost")
PSNR_CAP = 100.0  # dB, reported for a background that is bit-exact


@dataclass(frozen=True)
class Config:
    """One way to run an edit; ``label`` names ablation variants."""

    scheduler: str = "ddpm"
    eta: float = 0.0  # DDIM only
    steps: int = 100
    augmentations: int = 8
    exact_gradient: bool = True
    precision: str = "no"
    samples: int = 4
    blend: bool = True
    background_loss_scale: float = 0.0
    label: str = ""


class LastSampleProbe(PipelineCallback):
    """Keeps the sample the last step produced, before any blending or the final paste."""

    tensor_inputs = ["latents"]

    def __init__(self) -> None:
        super().__init__(cutoff_step_ratio=1.0)
        self.sample: torch.Tensor | None = None

    def callback_fn(self, pipeline, step_index: int, timestep: int, callback_kwargs: dict) -> dict:
        if step_index + 1 == pipeline.num_timesteps:
            self.sample = callback_kwargs["latents"].clone()
        return callback_kwargs


class EvaluationCounter:
    """Counts images through the UNet and through CLIP's image tower (forward passes, batch rows included)."""

    def __init__(self, pipe: BlendedDiffusionPipeline) -> None:
        self.unet = self.clip = 0
        pipe.unet.register_forward_pre_hook(self._count_unet)
        pipe.clip_model.register_forward_pre_hook(self._count_clip, with_kwargs=True)

    def _count_unet(self, module, args) -> None:
        self.unet += args[0].shape[0]

    def _count_clip(self, module, args, kwargs) -> None:
        self.clip += kwargs["pixel_values"].shape[0]


def mse_background_loss(source: torch.Tensor, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``D_bg`` without its LPIPS half, whose AlexNet weights cannot be downloaded here."""
    return ((source - images) * (1 - mask)).pow(2).mean(dim=(1, 2, 3))


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated GPU memory, or the process's peak resident set (since the last reset) on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return process_memory_mb("VmHWM")


def process_memory_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status: VmRSS (now) or VmHWM (peak since the reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_rss()


def psnr_outside(sample: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) of a (H, W, 3) sample against the input where the mask is 0; ``PSNR_CAP`` when identical."""
    error = np.mean((sample[~mask].astype(np.float64) - image[~mask]) ** 2)
    return PSNR_CAP if error == 0 else min(PSNR_CAP, 10 * math.log10(255**2 / error))


def border_step(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean colour step (mean absolute RGB difference, 0-255) between 4-neighbours on opposite sides of the mask."""
    pixels = image.astype(np.float32)
    steps = []
    for axis in (0, 1):
        crossing = np.diff(mask.astype(np.int8), axis=axis) != 0
        difference = np.abs(np.diff(pixels, axis=axis)).mean(axis=-1)
        steps.append(difference[crossing])
    return float(np.concatenate(steps).mean())


def diversity(results: list[np.ndarray], mask: np.ndarray) -> float:
    """Mean absolute difference (0-255) inside the mask between every pair of samples."""
    pairs = list(itertools.combinations(results, 2))
    if not pairs:
        return 0.0
    return float(np.mean([np.abs(a[mask].astype(np.float32) - b[mask]).mean() for a, b in pairs]))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    array = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return array.permute(0, 2, 3, 1).cpu().numpy()


def averages(per_edit: list[dict]) -> dict[str, float]:
    """Each per-edit figure's mean over the edits."""
    return {key: float(np.mean([edit[key] for edit in per_edit])) for key in per_edit[0]}


def summarise(config: Config, per_edit: list[dict], device: torch.device) -> dict:
    mean = averages(per_edit)
    return {
        **asdict(config),
        "edits": len(per_edit),
        "seconds_per_image": mean["seconds"] / config.samples,
        "unet_evaluations_per_image": mean["unet"] / config.samples,
        "clip_evaluations_per_image": mean["clip"] / config.samples,
        "peak_memory_mb": max(edit["peak_memory_mb"] for edit in per_edit),
        "memory_kind": "GPU allocated" if device.type == "cuda" else "CPU peak RSS",
        "top1_success": mean["top1"],
        "top1_success_by_ranking": {rank_by: mean[f"top1_{rank_by}"] for rank_by in RANK_BY},
        "batch_precision": mean["all_samples"],
        "clip_score_top1": mean["clip_score"],
        "background_psnr_before_paste": mean["psnr"],
        "seam_step": mean["seam"],
        "input_seam_step": mean["input_seam"],
        "diversity": mean["diversity"],
    }


def top1_by_ranking(
    pipe: BlendedDiffusionPipeline, results: list[np.ndarray], verdicts: list[bool], case: EditCase
) -> dict[str, bool]:
    """The judge's verdict on the result each way of ranking puts first."""
    images = to_model_range(np.stack(results)).to(pipe.device)
    mask = torch.from_numpy(case.mask).float()[None, None].to(pipe.device)
    target = pipe.guidance.prepare(case.prompt, pipe.device)
    return {rank_by: verdicts[int(rank(pipe.guidance, images, mask, target, rank_by)[0][0])] for rank_by in RANK_BY}


def measure(pipe: BlendedDiffusionPipeline, config: Config, cases: list[EditCase], counter: EvaluationCounter) -> dict:
    """Edit every case with ``config``; the judge's verdicts, costs and fidelity, averaged over the cases."""
    base_scheduler = pipe.scheduler
    pipe.scheduler = SCHEDULERS[config.scheduler].from_config(base_scheduler.config)
    settings = cli_defaults(pipe)
    per_edit = []
    for index, case in enumerate(cases):
        probe = LastSampleProbe()
        reset_peak_memory(pipe.device)
        counter.unet = counter.clip = 0
        began = time.perf_counter()
        out = pipe(
            prompt=case.prompt,
            image=PIL.Image.fromarray(case.image),
            mask_image=PIL.Image.fromarray(case.mask.astype(np.uint8) * 255),
            num_inference_steps=config.steps,
            strength=settings["strength"],
            num_images_per_prompt=config.samples,
            clip_guidance_scale=settings["clip_guidance_scale"],
            rank_by=settings["rank_by"],
            eta=config.eta,
            num_augmentations=config.augmentations,
            backprop_through_unet=config.exact_gradient,
            mixed_precision=config.precision,
            blend=config.blend,
            background_loss_scale=config.background_loss_scale,
            callback_on_step_end=MultiPipelineCallbacks([probe, BlendCallback()]) if config.blend else probe,
            generator=torch.Generator().manual_seed(index),
        )
        if pipe.device.type == "cuda":
            torch.cuda.synchronize(pipe.device)
        seconds = time.perf_counter() - began
        evaluations = {"unet": counter.unet, "clip": counter.clip, "peak_memory_mb": peak_memory_mb(pipe.device)}
        results = [np.asarray(image) for image in out.images]
        verdicts = [judge(result, case.mask, case.prompt).ok for result in results]
        unpasted = to_uint8(probe.sample)
        top1_by = top1_by_ranking(pipe, results, verdicts, case)
        per_edit.append(
            {
                "seconds": seconds,
                **evaluations,
                "top1": verdicts[0],
                **{f"top1_{rank_by}": ok for rank_by, ok in top1_by.items()},
                "all_samples": np.mean(verdicts),
                "clip_score": out.scores[0],
                "psnr": np.mean([psnr_outside(sample, case.image, case.mask) for sample in unpasted]),
                "seam": np.mean([border_step(result, case.mask) for result in results]),
                "input_seam": border_step(case.image, case.mask),
                "diversity": diversity(results, case.mask),
            }
        )
    pipe.scheduler = base_scheduler
    return summarise(config, per_edit, pipe.device)


def repaint(pipe: BlendedDiffusionPipeline, cases: list[EditCase], steps: int, jumps: int, samples: int) -> dict:
    """diffusers' RePaint with the same UNet: mask inpainting without text, the usual alternative."""
    peer = RePaintPipeline(unet=pipe.unet, scheduler=RePaintScheduler.from_config(pipe.scheduler.config))
    peer.set_progress_bar_config(disable=True)
    per_edit = []
    for index, case in enumerate(cases):
        image = to_model_range(case.image[None])
        keep = torch.from_numpy(~case.mask).float()[None, None]
        reset_peak_memory(pipe.device)
        began = time.perf_counter()
        out = peer(
            image=image.expand(samples, -1, -1, -1),
            mask_image=keep.expand(samples, -1, -1, -1),
            num_inference_steps=steps,
            jump_length=10,
            jump_n_sample=jumps,
            generator=torch.Generator().manual_seed(index),
            output_type="np",
        )
        seconds = time.perf_counter() - began
        results = list(np.round(out.images * 255).astype(np.uint8))
        per_edit.append(
            {
                "seconds": seconds,
                "peak_memory_mb": peak_memory_mb(pipe.device),
                "top1": judge(results[0], case.mask, case.prompt).ok,
                "psnr": np.mean([psnr_outside(r, case.image, case.mask) for r in results]),
                "seam": np.mean([border_step(r, case.mask) for r in results]),
                "diversity": diversity(results, case.mask),
            }
        )
    mean = averages(per_edit)
    return {
        "steps": steps,
        "jump_length": 10,
        "jump_n_sample": jumps,
        "samples": samples,
        "edits": len(per_edit),
        "seconds_per_image": mean["seconds"] / samples,
        "peak_memory_mb": max(edit["peak_memory_mb"] for edit in per_edit),
        "first_sample_success": mean["top1"],
        "background_psnr": mean["psnr"],
        "seam_step": mean["seam"],
        "diversity": mean["diversity"],
    }


def cost_growth(pipe: BlendedDiffusionPipeline, case: EditCase, steps: int, samples: list[int], sizes: list[int]):
    """Time and memory as samples grow (one batch vs one at a time) and as the image grows (crop path)."""
    settings = {**cli_defaults(pipe), "num_inference_steps": steps}

    def timed(image: np.ndarray, mask: np.ndarray, count: int) -> tuple[float, float]:
        reset_peak_memory(pipe.device)
        began = time.perf_counter()
        pipe(
            prompt=case.prompt,
            image=PIL.Image.fromarray(image),
            mask_image=PIL.Image.fromarray(mask.astype(np.uint8) * 255),
            generator=torch.Generator().manual_seed(0),
            **{**settings, "num_images_per_prompt": count},
        )
        if pipe.device.type == "cuda":
            torch.cuda.synchronize(pipe.device)
        return time.perf_counter() - began, peak_memory_mb(pipe.device)

    batching = []
    for count in samples:
        batch_seconds, batch_memory = timed(case.image, case.mask, count)
        single = [timed(case.image, case.mask, 1) for _ in range(count)]
        batching.append(
            {
                "samples": count,
                "batch_seconds_per_image": batch_seconds / count,
                "batch_peak_memory_mb": batch_memory,
                "one_at_a_time_seconds_per_image": sum(s for s, _ in single) / count,
                "one_at_a_time_peak_memory_mb": max(m for _, m in single),
            }
        )
    scaling = []
    for size in sizes:
        factor = size // case.image.shape[0]
        image, mask = upscale(case.image, factor), upscale(case.mask, factor)
        seconds, memory = timed(image, mask, settings["num_images_per_prompt"])
        scaling.append({"size": size, "seconds_per_edit": seconds, "peak_memory_mb": memory})
    return {"steps": steps, "batching": batching, "image_size": scaling}


def pareto_front(runs: list[dict]) -> list[int]:
    """Indices of the runs no other run beats on both seconds per image (lower) and top-1 success (higher)."""
    front = []
    for i, run in enumerate(runs):
        dominated = any(
            other["seconds_per_image"] <= run["seconds_per_image"]
            and other["top1_success"] >= run["top1_success"]
            and (other["seconds_per_image"], other["top1_success"]) != (run["seconds_per_image"], run["top1_success"])
            for other in runs
        )
        if not dominated:
            front.append(i)
    return front


def sweep_configs(mode: str) -> list[Config]:
    """Schedulers x steps at the default 8 views; then views, gradient mode and precision around anchor points."""
    if mode == "smoke":
        return [Config(steps=4, augmentations=2, samples=2), Config(scheduler="ddim", steps=4, precision="bf16")]
    if mode == "quick":
        schedulers, steps, anchors, views = ("ddpm", "ddim"), (10, 25), (Config(scheduler="ddim", steps=10),), (1,)
    else:
        schedulers, steps, views = tuple(SCHEDULERS), (10, 25, 50, 100), (1, 4, 16)
        anchors = (Config(), Config(scheduler="ddim", steps=25))
    grid = [Config(scheduler=s, steps=n) for s in schedulers for n in steps]
    grid += [Config(scheduler="ddim", eta=1.0, steps=n) for n in steps]
    for anchor in anchors:
        grid += [replace(anchor, augmentations=v) for v in views]
        grid += [
            replace(anchor, exact_gradient=e, precision=p) for e, p in ((False, "no"), (True, "bf16"), (False, "bf16"))
        ]
    return grid


def ablation_configs(mode: str) -> list[Config]:
    """Algorithm 2 with 8 views and 1, against Algorithm 1 over lambda (0: guided generation, then a plain paste)."""
    steps = {"smoke": 4, "quick": 25, "full": 100}[mode]
    lambdas = {"smoke": (0.0,), "quick": (0.0, 1000.0), "full": (0.0, 100.0, 1000.0, 10000.0)}[mode]
    base = Config(steps=steps, augmentations=2, samples=2) if mode == "smoke" else Config(steps=steps)
    runs = [replace(base, label="Algorithm 2 (blended)"), replace(base, augmentations=1, label="Algorithm 2, 1 view")]
    runs += [
        replace(base, blend=False, background_loss_scale=lam, label=f"Algorithm 1, lambda {lam:g}") for lam in lambdas
    ]
    return runs


class Measurements:
    """Runs each configuration once: an ablation that repeats a sweep point reuses its figures under its label."""

    def __init__(self, pipe: BlendedDiffusionPipeline, cases: list[EditCase]) -> None:
        self.pipe, self.cases = pipe, cases
        self.counter = EvaluationCounter(pipe)
        self.done: dict[Config, dict] = {}

    def __call__(self, config: Config) -> dict:
        key = replace(config, label="")
        if key not in self.done:
            self.done[key] = measure(self.pipe, key, self.cases, self.counter)
            run = self.done[key]
            print(f"{name(run)}: top-1 {run['top1_success']:.0%}, {run['seconds_per_image']:.2f} s/image", flush=True)
        return {**self.done[key], "label": config.label}


def scheduler_name(run: dict) -> str:
    return f"ddim eta {run['eta']:g}" if run["scheduler"] == "ddim" else run["scheduler"]


def name(run: dict) -> str:
    return run["label"] or (
        f"{scheduler_name(run)} {run['steps']} steps, {run['augmentations']} views, "
        f"{'exact' if run['exact_gradient'] else 'cheap'}, {'fp32' if run['precision'] == 'no' else run['precision']}"
    )


def headline(runs: list[dict]) -> dict:
    """The fastest configuration whose top-1 success is within 5 points of the best."""
    best = max(run["top1_success"] for run in runs)
    eligible = [run for run in runs if run["top1_success"] >= best - 0.05]
    fastest = min(eligible, key=lambda run: run["seconds_per_image"])
    return {
        "best_top1_success": best,
        "fastest_within_5_points": name(fastest),
        **{k: fastest[k] for k in ("top1_success", "seconds_per_image")},
    }


def markdown(results: dict) -> str:
    """The tables of the parts that ran, under a line naming machine, date, command and settings."""
    settings = results["settings"]
    lines = [
        f"Machine: {results['machine']}; date: {results['date']}; command: `{results['command']}`",
        f"Edits: `edit_cases({EDIT_SEED}, {results['edits']}, 32)`; strength {settings['strength']}, "
        f"guidance scale {settings['clip_guidance_scale']:g}; seconds include ranking; peak MB: "
        f"{'GPU allocated' if 'cuda' in results.get('device', '') else 'CPU peak RSS'} "
        f"({results['resident_memory_mb_after_loading']:.0f} MB resident after loading, before any edit).",
    ]
    if "sweep" in results:
        head = results["headline"]
        lines += [
            "",
            f"Headline: best top-1 success {head['best_top1_success']:.0%}; fastest within 5 points: "
            f"{head['fastest_within_5_points']} ({head['top1_success']:.0%} at {head['seconds_per_image']:.2f} s "
            "per image).",
            "",
            "### Sweep (P = on the Pareto front of seconds per image against top-1 success)",
            "",
            "| configuration | s/image | UNet evals/image | CLIP evals/image | peak MB | top-1 | batch precision | "
            "CLIP score | bg PSNR before paste (dB) | seam step (input) | diversity | P |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        front = set(results["pareto_front"])
        lines += [row(run, "P" if i in front else "") for i, run in enumerate(results["sweep"])]
    if "ablations" in results:
        lines += [
            "",
            "### Ablations",
            "",
            "| variant | s/image | UNet evals/image | CLIP evals/image | peak MB | top-1 | batch precision "
            "(= a random pick) | CLIP score | bg PSNR before paste (dB) | seam step (input) | diversity | |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [row(run, "") for run in results["ablations"]]
        lines += [
            "",
            "Ranking: top-1 success when the results are ranked by CLIP on the masked region (the paper), on the "
            "whole image, on both (the sum, the default), against a random pick (the batch precision).",
            "",
            "| variant | masked region | whole image | both | random pick |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {name(run)} | "
            + " | ".join(f"{run['top1_success_by_ranking'][rank_by]:.0%}" for rank_by in RANK_BY)
            + f" | {run['batch_precision']:.0%} |"
            for run in results["ablations"]
        ]
    if "repaint" in results:
        peer = results["repaint"]
        lines += [
            "",
            f"### Peer: diffusers RePaintPipeline, same UNet, no text ({peer['steps']} steps, jump length "
            f"{peer['jump_length']}, {peer['jump_n_sample']} resamplings)",
            "",
            "| pipeline | s/image | peak MB | judge success (first sample) | bg PSNR (dB) | seam step | diversity |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| RePaint | {peer['seconds_per_image']:.2f} | {peer['peak_memory_mb']:.0f} | "
            f"{peer['first_sample_success']:.0%} | {peer['background_psnr']:.1f} | {peer['seam_step']:.1f} | "
            f"{peer['diversity']:.1f} |",
        ]
    if "cost_growth" in results:
        cost = results["cost_growth"]
        lines += [
            "",
            f"### Cost growth ({cost['steps']} schedule steps)",
            "",
            "| samples | s/image, one batch | s/image, one at a time | peak MB, batch | peak MB, one at a time |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {b['samples']} | {b['batch_seconds_per_image']:.2f} | {b['one_at_a_time_seconds_per_image']:.2f} | "
            f"{b['batch_peak_memory_mb']:.0f} | {b['one_at_a_time_peak_memory_mb']:.0f} |"
            for b in cost["batching"]
        ]
        lines += ["", "| image side (crop path) | s per edit | peak MB |", "| --- | --- | --- |"]
        lines += [
            f"| {s['size']} | {s['seconds_per_edit']:.2f} | {s['peak_memory_mb']:.0f} |" for s in cost["image_size"]
        ]
    return "\n".join(lines) + "\n"


def row(run: dict, mark: str) -> str:
    return (
        f"| {name(run)} | {run['seconds_per_image']:.2f} | {run['unet_evaluations_per_image']:.0f} | "
        f"{run['clip_evaluations_per_image']:.0f} | {run['peak_memory_mb']:.0f} | {run['top1_success']:.0%} | "
        f"{run['batch_precision']:.0%} | {run['clip_score_top1']:.3f} | {run['background_psnr_before_paste']:.1f} | "
        f"{run['seam_step']:.1f} ({run['input_seam_step']:.1f}) | {run['diversity']:.1f} | {mark} |"
    )


def plain_log_ticks(axes, ticks: list[float]) -> None:
    """A log x axis labelled at ``ticks`` in plain numbers, without matplotlib's minor-tick labels."""
    from matplotlib.ticker import NullFormatter

    axes.set_xticks(ticks, [f"{t:g}" for t in ticks])
    axes.xaxis.set_minor_formatter(NullFormatter())


def plot(results: dict, prefix: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    if "sweep" in results:
        plot_pareto(results, prefix)
    if "cost_growth" in results:
        plot_cost(results["cost_growth"], prefix)


def plot_pareto(results: dict, prefix: Path) -> None:
    import matplotlib.pyplot as plt

    runs, front = results["sweep"], results["pareto_front"]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    schedulers = sorted({scheduler_name(run) for run in runs})
    for scheduler, marker in zip(schedulers, "osD^v<>", strict=False):
        chosen = [run for run in runs if scheduler_name(run) == scheduler]
        axes.scatter(
            [run["seconds_per_image"] for run in chosen],
            [run["top1_success"] for run in chosen],
            marker=marker,
            label=scheduler,
            alpha=0.7,
        )
    ordered = sorted((runs[i] for i in front), key=lambda run: run["seconds_per_image"])
    axes.step(
        [run["seconds_per_image"] for run in ordered],
        [run["top1_success"] for run in ordered],
        where="post",
        color="black",
        linewidth=1,
        label="Pareto front",
    )
    axes.set(xscale="log", xlabel="seconds per image (log)", ylabel="top-1 success (pixel judge)", ylim=(0, 1))
    plain_log_ticks(axes, [0.25, 0.5, 1, 2, 4, 8])
    axes.legend()
    figure.tight_layout()
    figure.savefig(f"{prefix}-pareto.png", dpi=120)
    plt.close(figure)


def plot_cost(cost: dict, prefix: Path) -> None:
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    samples = [b["samples"] for b in cost["batching"]]
    left.plot(samples, [b["batch_seconds_per_image"] for b in cost["batching"]], "o-", label="one batch")
    left.plot(samples, [b["one_at_a_time_seconds_per_image"] for b in cost["batching"]], "s--", label="one at a time")
    left.set(xlabel="samples", ylabel="seconds per image", xscale="log", ylim=(0, None))
    plain_log_ticks(left, samples)
    left.legend()
    sizes = [s["size"] for s in cost["image_size"]]
    right.plot(sizes, [s["seconds_per_edit"] for s in cost["image_size"]], "o-")
    right.set(xlabel="image side (pixels, crop path)", ylabel="seconds per edit", xscale="log", ylim=(0, None))
    plain_log_ticks(right, sizes)
    figure.tight_layout()
    figure.savefig(f"{prefix}-cost.png", dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="output path prefix (.json, .md, -pareto.png, -cost.png)"
    )
    parser.add_argument("--model", default=SHAPES_CHECKPOINT)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--edits", type=int, help="edits per configuration (default: 16 full, 4 quick, 1 smoke)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer configurations and edits: under 10 minutes")
    mode.add_argument("--smoke", action="store_true", help="a handful of tiny runs: checks the code")
    parser.add_argument(
        "--parts",
        type=lambda text: text.split(","),
        default=list(PARTS),
        help=f"comma-separated parts to run (default all: {','.join(PARTS)}); each writes its own tables",
    )
    parser.add_argument("--replot", action="store_true", help="redraw the table and plots from OUT.json; no runs")
    args = parser.parse_args()
    if args.replot:
        results = json.loads(Path(f"{args.out}.json").read_text())
        write_results(args.out, results, markdown(results))
        plot(results, args.out)
        return
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    count = args.edits or {"smoke": 1, "quick": 4, "full": 16}[mode]
    pipe = BlendedDiffusionPipeline.from_pretrained(args.model).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    pipe.background_loss = mse_background_loss
    loaded_memory_mb = process_memory_mb("VmRSS")
    cases = edit_cases(EDIT_SEED, count, 32)
    measured = Measurements(pipe, cases)
    results = {
        **provenance("tradeoffs.py"),
        "mode": mode,
        "parts": list(args.parts),
        "settings": cli_defaults(pipe),
        "edits": count,
        "resident_memory_mb_after_loading": loaded_memory_mb,
        "device": str(pipe.device),
        "background_loss": "MSE only (LPIPS needs AlexNet weights that cannot be downloaded here)",
    }
    if "sweep" in args.parts:
        sweep = [measured(config) for config in sweep_configs(mode)]
        results.update(sweep=sweep, pareto_front=pareto_front(sweep), headline=headline(sweep))
    if "ablations" in args.parts:
        results["ablations"] = [measured(config) for config in ablation_configs(mode)]
    if "repaint" in args.parts:
        results["repaint"] = repaint(
            pipe, cases, steps=4 if mode == "smoke" else 50, jumps=2 if mode == "smoke" else 4, samples=4
        )
    if "cost" in args.parts:
        growth_steps = {"smoke": 4, "quick": 8, "full": 40}[mode]
        results["cost_growth"] = cost_growth(
            pipe,
            cases[0],
            growth_steps,
            samples=[1, 2] if mode == "smoke" else [1, 2, 4, 8],
            sizes=[32, 64] if mode == "smoke" else [32, 64, 128, 256, 512],
        )
    write_results(args.out, results, markdown(results))
    plot(results, args.out)


if __name__ == "__main__":
    main()
