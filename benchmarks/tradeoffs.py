"""Speed/quality trade-offs, the paper's ablations, a RePaint peer and cost growth, on the shipped shapes model.

    python benchmarks/tradeoffs.py --out docs/figures/tradeoffs            # full, one process: about 4 h here
    python benchmarks/tradeoffs.py --headline --out docs/figures/tradeoffs # the published rows: about 8 min here
    python benchmarks/tradeoffs.py --quick --out /tmp/tradeoffs            # minutes on a 2-core CPU
    python benchmarks/tradeoffs.py --smoke --out /tmp/smoke                # seconds; what the tests run

    # the full run on two cores: two processes (one thread each) share the work and skip what the other did
    python benchmarks/tradeoffs.py --parts sweep --reuse B --out A &
    python benchmarks/tradeoffs.py --parts ablations,repaint,cost,sweep --reverse --reuse A --out B
    python benchmarks/tradeoffs.py --merge A B --out docs/figures/tradeoffs

Quality is refereed by the shapes world's pixel judge on the edit set (never by CLIP), 32 edits a row by default.
Writes PREFIX.json, a markdown table PREFIX.md and plots PREFIX-pareto.png and PREFIX-cost.png after every
configuration, so a stopped run keeps what it measured. Tables and plots: ``tradeoffs_report.py`` (a module).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import numpy as np
import torch
from diffusers import RePaintPipeline, RePaintScheduler
from diffusers.callbacks import MultiPipelineCallbacks

from benchmarks.common import (
    EvaluationCounter,
    LastSampleProbe,
    load_for_edits,
    peak_memory_mb,
    process_memory_mb,
    provenance,
    reset_peak_memory,
    timed_edit,
    upscale,
    write_results,
)
from benchmarks.metrics import averages, border_step, diversity, psnr_outside, to_uint8
from benchmarks.tradeoffs_report import headline, markdown, name, pareto_front, plot
from blended_pipeline import SHAPES_CHECKPOINT, BlendCallback, BlendedDiffusionPipeline
from blended_pipeline.ranking import RANK_BY, rank
from blended_pipeline.settings import SCHEDULERS, scheduler_class
from blended_pipeline.shapes.edits import EDIT_SETS, EditCase, edit_cases
from blended_pipeline.shapes.judge import judge
from blended_pipeline.shapes.training_utils import to_model_range

PARTS = ("sweep", "ablations", "repaint", "cost")
PIXEL_SCHEDULERS = tuple(name for name in SCHEDULERS if name != "euler")  # Euler scales its samples by sigma
BACKGROUND_LOSS = "mse"  # Algorithm 1's D_bg without LPIPS, whose AlexNet weights cannot be downloaded here


@dataclass(frozen=True)
class Config:
    """One way to run an edit, in the pipeline's own argument names; ``label`` names ablation variants. The field
    defaults are the paper's; the grids start from ``at_defaults`` (the checkpoint's), what a user runs."""

    scheduler: str = "ddpm"
    eta: float = 0.0  # DDIM only
    num_inference_steps: int = 100
    clip_guidance_scale: float = 1000.0
    num_augmentations: int = 8
    guidance_every: int = 1
    guidance_end: float = 1.0
    backprop_through_unet: bool = True
    mixed_precision: str = "no"
    num_images_per_prompt: int = 4
    blend: bool = True
    background_loss_scale: float = 0.0
    label: str = ""

    def pipeline_arguments(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key not in ("scheduler", "label")}


def at_defaults(defaults: dict) -> Config:
    """The configuration ``blended-edit`` runs (the checkpoint's defaults): the anchor each variant changes once."""
    known = {key: defaults[key] for key in Config.__dataclass_fields__ if defaults.get(key) is not None}
    return Config(**known)


def summarise(config: Config, per_edit: list[dict], device: torch.device) -> dict:
    mean = averages(per_edit)
    samples = config.num_images_per_prompt
    return {
        **asdict(config),
        "edits": len(per_edit),
        "seconds_per_image": mean["seconds"] / samples,
        "unet_evaluations_per_image": mean["unet"] / samples,
        "clip_evaluations_per_image": mean["clip"] / samples,
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
    guidance = pipe.guidance if pipe.guidance is not None else pipe._clip_guidance()
    images = to_model_range(np.stack(results)).to(pipe.device)
    mask = torch.from_numpy(case.mask).float()[None, None].to(pipe.device)
    target = guidance.prepare([case.prompt] * len(results), pipe.device)
    return {rank_by: verdicts[int(rank(guidance, images, mask, target, rank_by)[0][0])] for rank_by in RANK_BY}


def measure(pipe: BlendedDiffusionPipeline, config: Config, cases: list[EditCase], counter: EvaluationCounter) -> dict:
    """Edit every case with ``config``, the rest as ``blended-edit`` resolves it for that scheduler (a checkpoint's
    restart gives way under one that draws no noise); the judge's verdicts, costs and fidelity, averaged over the
    cases."""
    base_scheduler = pipe.scheduler
    pipe.scheduler = scheduler_class(config.scheduler).from_config(base_scheduler.config)
    settings = pipe.resolved_settings({**config.pipeline_arguments(), "background_loss": BACKGROUND_LOSS})
    per_edit = []
    for index, case in enumerate(cases):
        probe = LastSampleProbe()
        counter.unet = counter.clip = 0
        callback = MultiPipelineCallbacks([probe, BlendCallback()]) if config.blend else probe
        edit = timed_edit(pipe, case.image, case.mask, case.prompt, index, **settings, callback_on_step_end=callback)
        evaluations = {"unet": counter.unet, "clip": counter.clip}  # the edit's own, before the ranking probes
        verdicts = [judge(result, case.mask, case.prompt).ok for result in edit.results]
        unpasted = to_uint8(probe.sample)
        top1_by = top1_by_ranking(pipe, edit.results, verdicts, case)
        per_edit.append(
            {
                "seconds": edit.seconds,
                **evaluations,
                "peak_memory_mb": edit.peak_memory_mb,
                "top1": verdicts[0],
                **{f"top1_{rank_by}": ok for rank_by, ok in top1_by.items()},
                "all_samples": np.mean(verdicts),
                "clip_score": edit.scores[0],
                "psnr": np.mean([psnr_outside(sample, case.image, case.mask) for sample in unpasted]),
                "seam": np.mean([border_step(result, case.mask) for result in edit.results]),
                "input_seam": border_step(case.image, case.mask),
                "diversity": diversity(edit.results, case.mask),
            }
        )
    pipe.scheduler = base_scheduler
    return {**summarise(config, per_edit, pipe.device), "restart_at": settings["restart_at"]}


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


def cost_growth(
    pipe: BlendedDiffusionPipeline, defaults: dict, case: EditCase, steps: int, samples: list[int], sizes: list[int]
):
    """Time and memory as samples grow (one batch vs one at a time) and as the image grows (crop path), over the
    CLI's ``defaults``."""
    settings = {**defaults, "num_inference_steps": steps}

    def timed(image: np.ndarray, mask: np.ndarray, count: int) -> tuple[float, float]:
        edit = timed_edit(pipe, image, mask, case.prompt, 0, **{**settings, "num_images_per_prompt": count})
        return edit.seconds, edit.peak_memory_mb

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


def sweep_configs(mode: str, anchor: Config, on_gpu: bool = False) -> list[Config]:
    """Schedulers x steps at the default 8 views; then views, gradient mode and precision around the default
    ``anchor``. The headline grid is the default and one cheaper setting each, what docs/benchmarks.md shows.

    Schedulers are compared up to 50 steps (the shapes checkpoint's default; a checkpoint's own default joins the
    grid when it is another step count), then the default's variants. DDIM with eta 1 is not
    swept: with the clipped model output it is DDPM's step (the table of 2026-11-26 measured it equal to DDPM at
    every step count); 16 views cost twice 8 and measured no better there. bf16 autocast is swept on a GPU only: on
    this 2-core CPU, which has no bf16 arithmetic, one 90-step row did not finish in half an hour.
    """
    if mode == "smoke":
        return [
            Config(num_inference_steps=4, num_augmentations=2, num_images_per_prompt=2),
            Config(scheduler="ddim", num_inference_steps=4, mixed_precision="bf16"),
        ]
    if mode == "headline":
        return [
            anchor,
            replace(anchor, num_inference_steps=25),
            replace(anchor, scheduler="ddim", num_inference_steps=25),
            replace(anchor, num_inference_steps=10),
            replace(anchor, num_augmentations=1),
            replace(anchor, backprop_through_unet=False),
            replace(anchor, guidance_every=2),
            replace(anchor, guidance_end=0.7),
        ]
    if mode == "quick":
        schedulers, steps, views, anchor = ("ddpm", "ddim"), (10, 25), (1,), replace(anchor, num_inference_steps=25)
    else:
        schedulers, steps, views = PIXEL_SCHEDULERS, (10, 25, 50), (1, 4)
    grid = [replace(anchor, scheduler=s, num_inference_steps=n) for s in schedulers for n in steps]
    grid += [anchor] * (mode == "full" and anchor not in grid)  # the default: the anchor of the variants below
    grid += [replace(anchor, num_augmentations=v) for v in views]
    grid += [replace(anchor, backprop_through_unet=False)]
    half = anchor.num_inference_steps // 2
    grid += [replace(anchor, guidance_every=2), replace(anchor, num_inference_steps=half, guidance_every=2)]
    grid += [replace(anchor, num_inference_steps=half, guidance_end=end) for end in (0.5, 0.7)]
    grid += [replace(anchor, num_inference_steps=anchor.num_inference_steps * 3 // 10, clip_guidance_scale=2000.0)]
    if mode != "full" or on_gpu:  # bf16 autocast without bf16 hardware is many times slower than fp32
        grid += [replace(anchor, mixed_precision="bf16")]
    return grid


def ablation_configs(mode: str, anchor: Config) -> list[Config]:
    """Algorithm 2 with 8 views and 1, against Algorithm 1 over lambda (0: guided generation, then a plain paste)."""
    steps = {"smoke": 4, "quick": 25}.get(mode, anchor.num_inference_steps)
    lambdas = (0.0,) if mode == "smoke" else (0.0, 1000.0)
    base = replace(anchor, num_inference_steps=steps)
    if mode == "smoke":
        base = replace(base, num_augmentations=2, num_images_per_prompt=2)
    runs = [
        replace(base, label="Algorithm 2 (blended)"),
        replace(base, num_augmentations=1, label="Algorithm 2, 1 view"),
    ]
    runs += [
        replace(base, blend=False, background_loss_scale=lam, label=f"Algorithm 1, lambda {lam:g}") for lam in lambdas
    ]
    return runs


class Measurements:
    """Runs each configuration once: an ablation that repeats a sweep point reuses its figures under its label,
    and so does a configuration already in one of the ``reuse`` results files, which are read again before every
    measurement (so two processes sharing a grid, one of them with ``--reverse``, meet in the middle)."""

    def __init__(self, pipe: BlendedDiffusionPipeline, cases: list[EditCase], reuse: list[Path]) -> None:
        self.pipe, self.cases, self.reuse = pipe, cases, reuse
        self.counter = EvaluationCounter(pipe)
        self.done: dict[Config, dict] = {}

    def __call__(self, config: Config) -> dict:
        key = replace(config, label="")
        if key not in self.done:
            self.done.update(measured_in(self.reuse, len(self.cases)))
        if key not in self.done:
            self.done[key] = measure(self.pipe, key, self.cases, self.counter)
            run = self.done[key]
            print(f"{name(run)}: top-1 {run['top1_success']:.0%}, {run['seconds_per_image']:.2f} s/image", flush=True)
        return {**self.done[key], "label": config.label}


def measured_in(prefixes: list[Path], edits: int) -> dict[Config, dict]:
    """Every sweep or ablation run in these results files (those that exist) made on ``edits`` edits, unlabelled;
    not a run that does not record the restart it ran with (made before a restart gave way under DDIM at eta 0)."""
    found = {}
    for prefix in prefixes:
        path = Path(f"{prefix}.json")
        if path.exists():
            results = json.loads(path.read_text())
            for run in [*results.get("sweep", []), *results.get("ablations", [])]:
                if run["edits"] == edits and "restart_at" in run:
                    found[replace(config_of(run), label="")] = {**run, "label": ""}
    return found


def config_of(run: dict) -> Config:
    """The configuration of a run; fields added since a results file was written take their defaults."""
    return Config(**{field: run[field] for field in Config.__dataclass_fields__ if field in run})


def in_grid_order(runs: list[dict], grid: list[Config]) -> list[dict]:
    """``runs`` of ``grid``'s configurations (in any order, some perhaps twice), once each, in the grid's order."""
    by_config = {config_of(run): run for run in runs}
    return [by_config[config] for config in grid if config in by_config]


def merge(prefixes: list[Path], mode: str) -> dict:
    """One result from runs that shared the parts or a part's configurations (e.g. one ran ``--reverse``)."""
    parts = [json.loads(Path(f"{prefix}.json").read_text()) for prefix in prefixes]
    results = {**parts[0], **provenance("tradeoffs.py"), "merged_from": [part["command"] for part in parts]}
    results["parts"] = sorted({name for part in parts for name in part["parts"]})
    measured = measured_in(prefixes, parts[0]["edits"])
    anchor = at_defaults(parts[0]["settings"])
    for key, grid in (
        ("sweep", sweep_configs(mode, anchor, "cuda" in parts[0]["device"])),
        ("ablations", ablation_configs(mode, anchor)),
    ):
        runs = [{**measured[replace(c, label="")], "label": c.label} for c in grid if replace(c, label="") in measured]
        if key in results["parts"] and runs:
            results[key] = runs
    for key in ("repaint", "cost_growth"):
        found = [part[key] for part in parts if key in part]
        if found:
            results[key] = found[0]
    if "sweep" in results:
        results.update(pareto_front=pareto_front(results["sweep"]), headline=headline(results["sweep"]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="output path prefix (.json, .md, -pareto.png, -cost.png)"
    )
    parser.add_argument("--model", default=SHAPES_CHECKPOINT)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--edits", type=int, help="edits per configuration (default: 32 full, 4 quick, 1 smoke)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--headline", action="store_true", help="the published rows (the sweep only), 16 edits each")
    mode.add_argument("--quick", action="store_true", help="fewer configurations and edits: under 10 minutes")
    mode.add_argument("--smoke", action="store_true", help="a handful of tiny runs: checks the code")
    parser.add_argument(
        "--parts",
        type=lambda text: text.split(","),
        default=list(PARTS),
        help=f"comma-separated parts to run (default all: {','.join(PARTS)})",
    )
    parser.add_argument(
        "--reverse", action="store_true", help="run each part's configurations last first (a second process shares)"
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        nargs="+",
        default=[],
        metavar="PREFIX",
        help="results whose configurations count as measured (read again before each; for a second process)",
    )
    parser.add_argument("--replot", action="store_true", help="redraw the table and plots from OUT.json; no runs")
    parser.add_argument(
        "--merge", type=Path, nargs="+", metavar="PREFIX", help="write OUT from the results of these runs; no runs"
    )
    args = parser.parse_args()
    mode = "smoke" if args.smoke else "quick" if args.quick else "headline" if args.headline else "full"
    if args.replot or args.merge:
        results = merge(args.merge, mode) if args.merge else json.loads(Path(f"{args.out}.json").read_text())
        write_results(args.out, results, markdown(results))
        plot(results, args.out)
        return
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"--parts: unknown {sorted(unknown)}; choose from {PARTS}")
    count = args.edits or {"smoke": 1, "quick": 4, "headline": 16, "full": 32}[mode]
    if mode == "headline" and args.parts != list(PARTS):
        parser.error("--headline runs its own rows of the sweep; leave --parts out")
    parts = ["sweep"] if mode == "headline" else args.parts
    pipe, defaults = load_for_edits(args.model, device=args.device)
    loaded_memory_mb = process_memory_mb("VmRSS")
    cases = edit_cases(EDIT_SETS["judged"], count, 32)
    measured = Measurements(pipe, cases, args.reuse)
    results = {
        **provenance("tradeoffs.py"),
        "mode": mode,
        "parts": parts,
        "settings": defaults,
        "edits": count,
        "device": str(pipe.device),
        "resident_memory_mb_after_loading": loaded_memory_mb,
        "background_loss": f"{BACKGROUND_LOSS} (LPIPS needs AlexNet weights that cannot be downloaded here)",
    }

    def save() -> None:
        write_results(args.out, results, markdown(results))
        plot(results, args.out)

    anchor = at_defaults(defaults)
    grids = {
        "sweep": sweep_configs(mode, anchor, pipe.device.type == "cuda"),
        "ablations": ablation_configs(mode, anchor),
    }
    for part in parts:  # in the order asked for
        if part in grids:
            runs = []
            for config in reversed(grids[part]) if args.reverse else grids[part]:
                runs.append(measured(config))
                results[part] = in_grid_order(runs, grids[part])
                if part == "sweep":
                    results.update(pareto_front=pareto_front(results[part]), headline=headline(results[part]))
                save()
        elif part == "repaint":
            steps, jumps = (4, 2) if mode == "smoke" else (50, 4)
            results["repaint"] = repaint(pipe, cases, steps=steps, jumps=jumps, samples=4)
            save()
        elif part == "cost":
            results["cost_growth"] = cost_growth(
                pipe,
                defaults,
                cases[0],
                {"smoke": 4, "quick": 8, "full": 40}[mode],
                samples=[1, 2] if mode == "smoke" else [1, 2, 4, 8],
                sizes=[32, 64] if mode == "smoke" else [32, 64, 128, 256, 512],
            )
            save()


if __name__ == "__main__":
    main()
