"""Time the paper's configuration with randomly initialised weights at full size.

The ADM 256x256 unconditional UNet (learned sigma, 552.8M parameters) and CLIP ViT-B/16, 100 respaced steps of
which 75 run, 8 augmentations, 4 samples per batch, fp32 and bf16 autocast. Random weights cost exactly what
trained ones do. The paper's figure: about 27 s per image on an A10, 23 s in batches (Blended Latent Diffusion).

    python benchmarks/paper_config.py --device cuda --out docs/figures/paper_config     # on a GPU
    python benchmarks/paper_config.py --device cuda --compile --out docs/figures/paper_config-compiled  # and compiled
    python benchmarks/paper_config.py --device cuda --channels-last --out /tmp/paper_config-nhwc        # UNet in NHWC
    python benchmarks/paper_config.py --steps 1 --out /tmp/paper_config                  # on a CPU, cut short
    python benchmarks/paper_config.py --smoke --out /tmp/smoke                           # tiny models, seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import torch

from benchmarks.common import heading, provenance
from benchmarks.paper_models import build, time_one
from blended_pipeline import BlendedDiffusionPipeline


def warmed_runs(
    pipe: BlendedDiffusionPipeline,
    precisions: list[str],
    args: argparse.Namespace,
    device: torch.device,
    compiled: bool = False,
) -> list[dict]:
    """Each precision timed after a short warm-up run of it: kernel selection, allocator growth and compiling are
    not part of an edit's cost. Compiled code is warmed at the timed runs' batch size, eager code at one sample."""
    for precision in precisions:
        time_one(pipe, precision, 2, args.samples if compiled else 1, args.augmentations, device)
    return [time_one(pipe, p, args.steps, args.samples, args.augmentations, device, compiled) for p in precisions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=100, help="schedule steps; 75%% of them run (default 100)")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--augmentations", type=int, default=8)
    parser.add_argument("--precisions", default="no,bf16", help="comma-separated: no (fp32), bf16, fp16")
    parser.add_argument(
        "--channels-last", action="store_true", help="then time each precision again with the UNet channels-last"
    )
    parser.add_argument("--compile", action="store_true", help="then time each precision again with pipe.compile()")
    parser.add_argument("--smoke", action="store_true", help="tiny models and 2 steps: checks the code")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.samples, args.augmentations = 2, 2, 2
    device = torch.device(args.device)
    pipe = build(args.smoke).to(device)
    pipe.set_progress_bar_config(disable=True)
    precisions = args.precisions.split(",")
    runs = warmed_runs(pipe, precisions, args, device)
    if args.channels_last:  # the convolutions in NHWC, as cuDNN's tensor-core kernels and oneDNN prefer
        pipe.unet.to(memory_format=torch.channels_last)
        runs += warmed_runs(pipe, precisions, args, device)
    if args.compile:  # compiling happens in the warm-up, at the timed runs' shapes
        pipe.compile()
        runs += warmed_runs(pipe, precisions, args, device, compiled=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    results = {
        **provenance("paper_config.py"),
        "device": name,
        "smoke": args.smoke,
        "unet_parameters": sum(p.numel() for p in pipe.unet.parameters()),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(results, indent=2))
    lines = [
        f"{heading(results)}; device: {name}; UNet parameters: {results['unet_parameters']:,}",
        "",
        "| precision | UNet layout | compiled | steps run | samples | views | s per image | s per image at 75 steps "
        "| peak MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['precision']} | {r['unet_layout']} | {'yes' if r['compiled'] else 'no'} | {r['denoising_steps']} | "
        f"{r['samples']} | {r['augmentations']} | "
        f"{r['seconds_per_image']:.2f} | {r['seconds_per_image_at_75_steps']:.1f} | {r['peak_memory_mb']:.0f} |"
        for r in runs
    ]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
