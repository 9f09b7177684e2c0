"""What the benchmark scripts share: the CLI's default settings, the machine's name, writing results."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

from blended_pipeline import BlendedDiffusionPipeline
from blended_pipeline.cli import build_parser, pipeline_settings

SMOKE_SETTINGS = dict(num_inference_steps=4, num_images_per_prompt=2, num_augmentations=2)  # checks code, not models


def load_for_edits(model: str, smoke: bool) -> tuple[BlendedDiffusionPipeline, dict]:
    """The pipeline (no progress bar) and the settings its edits run at: the CLI's, or tiny ones with ``smoke``."""
    pipe = BlendedDiffusionPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    return pipe, {**cli_defaults(pipe), **(SMOKE_SETTINGS if smoke else {})}


def cli_defaults(pipe: BlendedDiffusionPipeline) -> dict:
    """The pipeline arguments ``blended-edit`` uses with ``pipe`` when none are given (its strength included)."""
    return pipeline_settings(build_parser().parse_args(["--demo", "--out", "unused"]), pipe.config)


def upscale(array: np.ndarray, factor: int) -> np.ndarray:
    """An image or mask ``factor`` times larger on each side, each pixel repeated (nearest neighbour)."""
    return array.repeat(factor, axis=0).repeat(factor, axis=1)


def provenance(script: str) -> dict:
    """Machine, date and the exact command, recorded beside every published figure."""
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "date": date.today().isoformat(),
        "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]),
    }


def write_results(prefix: Path, results: dict, markdown: str) -> None:
    """``PREFIX.json`` and ``PREFIX.md``; the markdown is also printed."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.json").write_text(json.dumps(results, indent=2))
    Path(f"{prefix}.md").write_text(markdown)
    print(markdown)
