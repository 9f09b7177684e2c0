"""What the benchmark scripts share to run edits and record them: the pipeline and settings ``blended-edit`` uses,
one timed edit with its peak memory, instruments hooked into a run, kept results, the machine's name, writing
results. Scripts import it as ``benchmarks.common`` and never import one another."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.callbacks import PipelineCallback

from blended_pipeline import BlendedDiffusionPipeline

SMOKE_SETTINGS = dict(num_inference_steps=4, num_images_per_prompt=2, num_augmentations=2)  # checks code, not models
BLENDED_EDIT = (sys.executable, "-m", "blended_pipeline.cli")
"""``blended-edit`` as the scripts that time the command run it: by this Python, so the code timed is this one."""


def load_for_edits(
    model: str,
    smoke: bool = False,
    ranking_clip: str | None = None,
    device: str = "cpu",
    scheduler: str | None = None,
    given: Mapping[str, Any] | None = None,
) -> tuple[Any, dict]:
    """The pipeline as ``blended-edit`` loads it (``ranking_clip``, a CLIP directory, ranking if given;
    ``scheduler``, a name of ``SCHEDULERS``, swapped in; no progress bar) and the settings it edits at when given
    ``given`` (by argument name) and no other options: tiny ones (``tiny_settings``) with ``smoke``.

    Loaded and resolved as ``blended-edit`` does, after the swap (a checkpoint's restart gives way under a sampler
    that draws no noise), so that every figure is measured at the shipped defaults as the command runs them."""
    from blended_pipeline.loading import load_pipeline
    from blended_pipeline.settings import scheduler_class

    pipe = load_pipeline(model, device, ranking_clip=ranking_clip)
    pipe.set_progress_bar_config(disable=True)
    if scheduler is not None:
        pipe.scheduler = scheduler_class(scheduler).from_config(pipe.scheduler.config)
    settings = pipe.resolved_settings(dict(given or {}))
    return pipe, tiny_settings(settings) if smoke else settings


def tiny_settings(settings: dict) -> dict:
    """``settings`` with those of ``SMOKE_SETTINGS`` the pipeline takes (a latent one takes no views) over them."""
    return {**settings, **{name: value for name, value in SMOKE_SETTINGS.items() if name in settings}}


def parse_setting(text: str) -> tuple[str, object]:
    """``--setting NAME=VALUE``: a pipeline argument, VALUE read as JSON, else as a bare word."""
    name, _, value = text.partition("=")
    if not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value  # a bare word: a string setting such as rank_by=whole


def upscale(array: np.ndarray, factor: int) -> np.ndarray:
    """An image or mask ``factor`` times larger on each side, each pixel repeated (nearest neighbour)."""
    return array.repeat(factor, axis=0).repeat(factor, axis=1)


LOAD_AT_START = os.getloadavg()[0]
"""The one-minute load average when a script imported this module: after its imports, before its measurements."""


def provenance(script: str) -> dict:
    """Machine, its load at the start, date, the exact command, the commit and the versions that matter, beside
    every published figure."""
    import diffusers

    return {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "load_average": LOAD_AT_START,
        "date": date.today().isoformat(),
        "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]),
        "commit": commit(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
    }


QUIET_LOAD = 1.0
"""The one-minute load average above which a timing comparison refuses to start: more than this process (which
counts itself while it imports) is running."""


def quiet_machine(allow_busy: bool = False) -> float:
    """The one-minute load average, checked: a timing comparison is only valid with nothing else running, so a
    busy machine stops it unless ``allow_busy`` (the load is then recorded beside the figures)."""
    load = os.getloadavg()[0]
    if load > QUIET_LOAD and not allow_busy:
        raise SystemExit(
            f"the one-minute load average is {load:.2f} (> {QUIET_LOAD}): something else is running; wait for it, "
            "or pass --allow-busy to measure anyway with the load recorded"
        )
    return load


def heading(results: dict) -> str:
    """A results table's first line: where (and how busy), when, from which commit and by which command it was
    made."""
    load = f", load {results['load_average']:.2f} at the start" if "load_average" in results else ""
    return (
        f"Machine: {results['machine']}{load}; commit {results['commit']} (torch {results['torch']}, diffusers "
        f"{results['diffusers']}); date: {results['date']}; command: `{results['command']}`"
    )


def commit(root: Path | None = None) -> str:
    """The commit of the checkout at ``root`` (this one by default), with "+changes" when its tracked files differ
    from it outside ``docs/`` (the results files a run writes are tracked there); "unknown" outside git."""
    root = root or Path(__file__).resolve().parents[1]

    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=root, capture_output=True, text=True, check=True).stdout

    try:
        changed = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs").strip())
        return git("rev-parse", "--short", "HEAD").strip() + ("+changes" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name() -> str:
    """The processor's model name where Linux tells it, else the architecture: two CPUs of one architecture can
    round differently, and a benchmark's edits then differ too, so each figure says which it ran on."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    if not names:
        return platform.machine()
    return f"{names[0]}{' with bf16 arithmetic' if 'avx512_bf16' in cpuinfo else ''}, {platform.machine()}"


def write_results(prefix: Path, results: dict, markdown: str) -> None:
    """``PREFIX.json`` and ``PREFIX.md``; the markdown is also printed."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.json").write_text(json.dumps(results, indent=2))
    Path(f"{prefix}.md").write_text(markdown)
    print(markdown)


def unet_layout(unet: torch.nn.Module) -> str:
    """How the UNet's convolution weights lie in memory: "channels-last" (NHWC) or "NCHW"."""
    return "channels-last" if unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last) else "NCHW"


def load_kept(paths: Sequence[Path]) -> dict[str, np.ndarray]:
    """The arrays of one or more ``hard_edits.py --keep-results`` files, merged; each array is named
    ``KIND/FIELD``. A kind in several files (several edit sets) holds the edits of all of them, in order."""
    parts: dict[str, list[np.ndarray]] = {}
    for path in paths:
        with np.load(path) as arrays:
            for name in arrays.files:
                parts.setdefault(name, []).append(arrays[name])
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def kinds_in(kept: dict[str, np.ndarray]) -> list[str]:
    """The kinds of edit in kept arrays, in the order they were written."""
    return list(dict.fromkeys(name.split("/")[0] for name in kept))


def with_all_hard(rows: dict[str, dict], summed: Sequence[str] = ("edits",)) -> dict[str, dict]:
    """``rows`` (one per kind) and, where any kind is hard (not "standard"), an "all hard" row: the figures under
    ``summed`` added up (counts), every other one averaged over the hard kinds, which have equal edit counts;
    nested dicts key by key."""
    hard = [row for kind, row in rows.items() if kind != "standard"]
    if not hard:
        return rows
    return {**rows, "all hard": {key: _combined([row[key] for row in hard], key in summed) for key in hard[0]}}


def _combined(values: list, add: bool) -> Any:
    if isinstance(values[0], dict):
        return {key: _combined([value[key] for value in values], add) for key in values[0]}
    return (np.sum(values) if add else np.mean(values)).item()


@dataclass
class TimedEdit:
    """One edit's ranked results as (H, W, 3) uint8 arrays, their scores, its wall time and peak memory."""

    results: list[np.ndarray]
    scores: list[float]
    seconds: float
    peak_memory_mb: float


def timed_edit(
    pipe: BlendedDiffusionPipeline, image: np.ndarray, mask: np.ndarray, prompt: str, seed: int, **settings
) -> TimedEdit:
    """Edit ``image`` where the boolean ``mask`` is set, with a generator seeded ``seed``; timed, memory probed."""
    reset_peak_memory(pipe.device)
    began = time.perf_counter()
    out = pipe(
        prompt=prompt,
        image=PIL.Image.fromarray(image),
        mask_image=PIL.Image.fromarray(mask.astype(np.uint8) * 255),
        generator=torch.Generator().manual_seed(seed),
        **settings,
    )
    if pipe.device.type == "cuda":
        torch.cuda.synchronize(pipe.device)
    seconds = time.perf_counter() - began
    results = [np.asarray(result) for result in out.images]
    return TimedEdit(results, out.scores, seconds, peak_memory_mb(pipe.device))


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: the GPU's allocator statistics, or the process's peak resident set (Linux)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated GPU memory, or the process's peak resident set, since the last ``reset_peak_memory``."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return process_memory_mb("VmHWM")


def process_memory_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status: VmRSS (now) or VmHWM (peak since the reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


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


TARGET_OVERHEAD = 0.03
"""The most this project's latent pipeline may cost per step over diffusers' inpaint pipeline on the same weights."""
SAME_WORK = dict(num_images_per_prompt=1, blend_noise="initial")
"""This project's latent settings for the same sampling work as diffusers': one result, the start's noise reused."""


def seconds_of(call: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def seconds_per_step(
    runs: dict[str, Callable[[int], Callable[[], object]]], steps: tuple[int, int], repeats: int
) -> dict[str, float]:
    """Each pipeline's seconds per denoising step: ``runs[name](count)`` is a call of ``count`` steps; every call
    runs ``repeats`` times at both step counts, alternating, and the difference of the medians over the difference
    of the steps drops the fixed costs (prompt encoding, the VAE, the paste). Each runs once untimed first, so that
    first-call costs (lazy set-up, the allocator) do not fall on one step count."""
    for run in runs.values():
        run(steps[0])()
    times = {name: {count: [] for count in steps} for name in runs}
    for _ in range(repeats):
        for count in steps:
            for name, run in runs.items():
                times[name][count].append(seconds_of(run(count)))
    return {
        name: (statistics.median(by_count[steps[1]]) - statistics.median(by_count[steps[0]])) / (steps[1] - steps[0])
        for name, by_count in times.items()
    }


def per_step_against(
    reference, ours, call: dict, steps: tuple[int, int], repeats: int, reference_options: dict | None = None
) -> dict[str, float]:
    """Seconds per step of diffusers' pipeline ``reference`` and this project's ``ours`` on the same ``call``
    arguments at strength 1 (``ours`` with ``SAME_WORK``, ``reference`` with ``reference_options``), and the
    overhead of ours."""

    def run(pipe, options: dict):
        return lambda count: (
            lambda: pipe(
                **call,
                num_inference_steps=count,
                strength=1.0,
                generator=torch.Generator().manual_seed(0),
                **options,
            )
        )

    result = seconds_per_step(
        {"diffusers": run(reference, reference_options or {}), "ours": run(ours, SAME_WORK)}, steps, repeats
    )
    return {**result, "overhead": result["ours"] / result["diffusers"] - 1}
