"""Time the latent pipeline at the Stable Diffusion 2 base architecture (512 px) with random weights, beside the
pixel pipeline's paper configuration, in one run.

Random weights cost exactly what trained ones do. Latent: SD 2 base's UNet (865M parameters), VAE and OpenCLIP
ViT-H text encoder, 50 DDIM steps of which 75% run, classifier-free guidance, 4 results. Pixel: the ADM 256x256
UNet and CLIP ViT-B/16 of ``paper_config.py`` (``paper_models.py``), 100 steps of which 75 run, 8 views, 4 results.

    python benchmarks/sd2_config.py --device cuda --out docs/figures/sd2_config        # on a GPU
    python benchmarks/sd2_config.py --smoke --out /tmp/sd2                             # tiny models, seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from benchmarks import paper_models
from benchmarks.common import heading, provenance, timed_edit
from blended_pipeline import BlendedLatentDiffusionPipeline
from blended_pipeline.shapes.tokenizer import build_tokenizer

SD2_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
    layers_per_block=2,
)
SD2_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
    layers_per_block=2,
    sample_size=512,
    scaling_factor=0.18215,
)
SD2_TEXT = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
)
TINY_UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=8,
    cross_attention_dim=32,
    layers_per_block=1,
)
TINY_VAE = dict(
    block_out_channels=(16, 32),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=16,
    sample_size=16,
)
TINY_TEXT = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


def build_latent(smoke: bool) -> BlendedLatentDiffusionPipeline:
    torch.manual_seed(0)
    return BlendedLatentDiffusionPipeline(
        vae=AutoencoderKL(**(TINY_VAE if smoke else SD2_VAE)).eval(),
        text_encoder=CLIPTextModel(CLIPTextConfig(**(TINY_TEXT if smoke else SD2_TEXT))).eval(),
        tokenizer=build_tokenizer(("a", "red", "ball"), max_length=77),
        unet=UNet2DConditionModel(**(TINY_UNET if smoke else SD2_UNET)).eval(),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False),
    )


def time_latent(pipe: BlendedLatentDiffusionPipeline, precision: str, steps: int, samples: int) -> dict:
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), bool)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True
    edit = timed_edit(
        pipe,
        image,
        mask,
        "a red ball",
        0,
        num_inference_steps=steps,
        strength=0.75,
        num_images_per_prompt=samples,
        mixed_precision=precision,
    )
    return {
        "pipeline": "latent (SD 2 base, 512 px)",
        "precision": precision,
        "denoising_steps": round(steps * 0.75),
        "samples": samples,
        "seconds_per_image": edit.seconds / samples,
        "peak_memory_mb": edit.peak_memory_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", default="fp16,bf16", help="comma-separated: no (fp32), bf16, fp16")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="tiny models, 2 steps: checks the code")
    args = parser.parse_args()
    device = torch.device(args.device)
    latent_steps, pixel_steps, views = (4, 2, 2) if args.smoke else (50, 100, 8)
    latent = build_latent(args.smoke).to(device)
    pixel = paper_models.build(args.smoke).to(device)
    runs = []
    for precision in args.precisions.split(","):
        for pipe in (latent, pixel):
            pipe.set_progress_bar_config(disable=True)
        time_latent(latent, precision, 2, 1)  # warm-up: kernel selection and allocator growth
        paper_models.time_one(pixel, precision, 2, 1, views, device)
        runs.append(time_latent(latent, precision, latent_steps, args.samples))
        pixel_run = paper_models.time_one(pixel, precision, pixel_steps, args.samples, views, device)
        runs.append({"pipeline": "pixel (paper: ADM 256 + ViT-B/16)", **pixel_run})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    results = {**provenance("sd2_config.py"), "device": name, "smoke": args.smoke, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(results, indent=2))
    lines = [
        f"{heading(results)}; device: {name}",
        "",
        "| pipeline | precision | steps run | results | s / image | peak memory MB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        lines.append(
            f"| {run['pipeline']} | {run['precision']} | {run['denoising_steps']} | {run['samples']} | "
            f"{run['seconds_per_image']:.2f} | {run['peak_memory_mb']:.0f} |"
        )
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
