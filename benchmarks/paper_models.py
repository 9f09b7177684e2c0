"""The paper's models at full size with random weights (which cost what trained ones do), or tiny ones to check
code, and one timed edit of them: what ``paper_config.py``, ``sd2_config.py``, ``profile_step.py`` and
``vs_authors.py`` build."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDPMScheduler
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from benchmarks.common import timed_edit, unet_layout
from blended_pipeline import BlendedDiffusionPipeline
from blended_pipeline.convert_adm import ADMConfig, scheduler_for, unet_for
from blended_pipeline.shapes.tokenizer import build_tokenizer

VIT_B_16 = dict(
    text_config=dict(
        vocab_size=49408,
        hidden_size=512,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=8,
        max_position_embeddings=77,
    ),
    vision_config=dict(
        image_size=224,
        patch_size=16,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
    ),
    projection_dim=512,
)
TINY_ADM = dict(
    image_size=32,
    num_channels=32,
    num_res_blocks=1,
    channel_mult=(1, 2),
    attention_resolutions=(16,),
    num_head_channels=16,
)
TINY_CLIP = dict(
    text_config=dict(
        vocab_size=49408,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
    ),
    vision_config=dict(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    ),
    projection_dim=16,
)


def build(smoke: bool) -> BlendedDiffusionPipeline:
    torch.manual_seed(0)
    adm = ADMConfig(**TINY_ADM) if smoke else ADMConfig()
    clip_config = CLIPConfig(**(TINY_CLIP if smoke else VIT_B_16))
    size = clip_config.vision_config.image_size
    scheduler: DDPMScheduler = scheduler_for(adm)
    return BlendedDiffusionPipeline(
        unet=unet_for(adm).eval(),
        scheduler=scheduler,
        clip_model=CLIPModel(clip_config).eval(),
        tokenizer=build_tokenizer(("a", "red", "ball"), max_length=77),
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
    )


def time_one(
    pipe: BlendedDiffusionPipeline,
    precision: str,
    steps: int,
    samples: int,
    augmentations: int,
    device: torch.device,
    compiled: bool = False,
) -> dict:
    size = pipe.unet.config.sample_size
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), bool)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True
    run_steps = max(1, round(steps * 0.75))
    edit = timed_edit(
        pipe,
        image,
        mask,
        "a red ball",
        0,
        num_inference_steps=steps,
        strength=run_steps / steps,
        num_images_per_prompt=samples,
        num_augmentations=augmentations,
        mixed_precision=precision,
    )
    seconds = edit.seconds
    return {
        "precision": precision,
        "compiled": compiled,
        "unet_layout": unet_layout(pipe.unet),
        "denoising_steps": run_steps,
        "samples": samples,
        "augmentations": augmentations,
        "seconds": seconds,
        "seconds_per_image": seconds / samples,
        "seconds_per_image_at_75_steps": seconds / samples * 75 / run_steps,
        "peak_memory_mb": edit.peak_memory_mb,
    }
