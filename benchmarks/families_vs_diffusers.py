"""Each model family's pipeline against diffusers' own inpaint pipeline of that family: seconds per denoising step
on identical weights and settings, in one run; and what the ranking and the decoder reconstruction cost.

    python benchmarks/families_vs_diffusers.py --out docs/figures/families_vs_diffusers

Per family (SD, SDXL, SD3, Flux) the script builds small random components (seeded; a denoiser of a few million
parameters, so that a step costs tens of milliseconds on a CPU), and times both pipelines at two step counts,
alternating, each a number of times: the seconds per step are the difference of the medians over the difference
of the steps, so that the fixed costs (prompt encoding, the VAE, the paste) drop out. This pipeline runs without
CLIP parts (no ranking) and blends with the start's noise as diffusers does (``SAME_WORK``; its default draws
fresh noise each step, one ``randn`` of the latents' size more); the target is at most 3% more per step than
diffusers'. Then the ranking (CLIP parts loaded, 4 results against 4) and the decoder
reconstruction (``reconstruction="decoder"`` against "paste") are timed alone, as whole calls.

The machine must be idle (``common.quiet_machine``); its load is recorded. ``--smoke`` checks the code in seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

from benchmarks.common import (
    TARGET_OVERHEAD,
    heading,
    per_step_against,
    provenance,
    quiet_machine,
    seconds_of,
    write_results,
)

WORDS = ("a", "red", "ball")
DIFFUSERS_INPAINT = {
    "sd": "StableDiffusionInpaintPipeline",
    "sdxl": "StableDiffusionXLInpaintPipeline",
    "sd3": "StableDiffusion3InpaintPipeline",
    "flux": "FluxInpaintPipeline",
}


def small_parts(family: str, width: int, depth: int = 1) -> dict:
    """Random components of ``family`` (seeded), the denoiser ``width`` channels wide at 32x32 latents (a
    transformer ``depth`` times its base number of blocks, so that its step costs about a UNet's); the VAE small
    (4x downsampling) and the text encoders tiny, as both pipelines share their fixed costs."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from blended_pipeline.shapes.tokenizer import build_tokenizer

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        latent_channels=16 if family in ("sd3", "flux") else 4,
        block_out_channels=(16, 16, 32),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=8,
        sample_size=128,
        **(
            dict(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1) if family in ("sd3", "flux") else {}
        ),
    ).eval()
    tokenizer: CLIPTokenizer = build_tokenizer(WORDS, max_length=16)
    text = dict(text_config(tokenizer), projection_dim=16)
    if family in ("sd", "sdxl"):
        extra = {}
        if family == "sdxl":
            extra = dict(
                addition_embed_type="text_time",
                addition_time_embed_dim=8,
                projection_class_embeddings_input_dim=8 * 6 + 16,
                use_linear_projection=True,
            )
        unet = diffusers.UNet2DConditionModel(
            sample_size=32,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(width, 2 * width),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32 if family == "sd" else 64,
            attention_head_dim=8,
            norm_num_groups=8,
            **extra,
        ).eval()
        parts = dict(vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**text)).eval(), tokenizer=tokenizer, unet=unet)
        if family == "sd":
            parts["scheduler"] = diffusers.DDIMScheduler(
                beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
            )
            return parts
        parts["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**text)).eval()
        parts.update(tokenizer_2=tokenizer, scheduler=diffusers.EulerDiscreteScheduler(beta_schedule="scaled_linear"))
        return parts
    from transformers import T5Config, T5EncoderModel

    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=64, num_layers=1, num_heads=2))
    if family == "sd3":
        transformer = diffusers.SD3Transformer2DModel(
            sample_size=32,
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=2 * depth,
            attention_head_dim=width // 2,
            num_attention_heads=2,
            joint_attention_dim=64,
            caption_projection_dim=width,
            pooled_projection_dim=32,
            pos_embed_max_size=32,
        ).eval()
        encoders = [CLIPTextModelWithProjection(CLIPTextConfig(**text)).eval() for _ in range(2)]
        return dict(
            transformer=transformer,
            scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=vae,
            text_encoder=encoders[0],
            tokenizer=tokenizer,
            text_encoder_2=encoders[1],
            tokenizer_2=tokenizer,
            text_encoder_3=t5.eval(),
            tokenizer_3=tokenizer,
        )
    transformer = diffusers.FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=depth,
        num_single_layers=2 * depth,
        attention_head_dim=width // 2,
        num_attention_heads=2,
        joint_attention_dim=64,
        pooled_projection_dim=32,
        axes_dims_rope=(width // 8, width // 8, width // 4),
        guidance_embeds=True,
    ).eval()
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)
    return dict(
        scheduler=scheduler,
        vae=vae,
        text_encoder=CLIPTextModel(CLIPTextConfig(**text)).eval(),
        tokenizer=tokenizer,
        text_encoder_2=t5.eval(),
        tokenizer_2=tokenizer,
        transformer=transformer,
    )


def pipelines(family: str, width: int, depth: int) -> tuple:
    """diffusers' inpaint pipeline and this project's, on the same components."""
    import diffusers

    from blended_pipeline.families import latent_pipeline_class

    parts = small_parts(family, width, depth)
    extra = {
        "sd": dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False),
        "sdxl": dict(add_watermarker=False),
    }.get(family, {})
    reference = getattr(diffusers, DIFFUSERS_INPAINT[family])(**parts, **extra)
    ours = latent_pipeline_class(family)(**parts)
    for pipe in (reference, ours):
        pipe.set_progress_bar_config(disable=True)
    return reference, ours


def inputs(side: int) -> tuple[PIL.Image.Image, PIL.Image.Image]:
    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    mask = np.zeros((side, side), np.uint8)
    mask[side // 4 : side // 2, side // 3 : 2 * side // 3] = 255
    return image, PIL.Image.fromarray(mask)


def per_step(reference, ours, image, mask, steps: tuple[int, int], repeats: int) -> dict:
    """Seconds per step of each pipeline and this one's overhead (``common.per_step_against``)."""
    side = image.size[0]
    size = dict(height=side, width=side) if type(ours).family == "flux" else {}
    call = dict(prompt="a red ball", image=image, mask_image=mask)
    return per_step_against(reference, ours, call, steps, repeats, size)


def text_config(tokenizer) -> dict:
    """The small CLIP text tower every family's encoders and the ranking CLIP share, for ``tokenizer``."""
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def extras_cost(plain, image, mask, steps: int, repeats: int, results: int) -> dict:
    """Whole-call seconds of the pipeline ``plain`` (no CLIP parts): ranking (the same components with CLIP
    parts) against none, and the decoder reconstruction against the paste."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from blended_pipeline.shapes.tokenizer import build_tokenizer

    torch.manual_seed(1)
    tokenizer = build_tokenizer(WORDS, max_length=16)
    clip = CLIPModel(
        CLIPConfig(
            text_config=text_config(tokenizer),
            vision_config=dict(
                image_size=64,
                patch_size=8,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
            ),
            projection_dim=16,
        )
    ).eval()
    features = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    ranking = dict(clip_model=clip, clip_tokenizer=tokenizer, feature_extractor=features)
    ranked = type(plain)(**{**plain.components, **ranking})
    ranked.set_progress_bar_config(disable=True)

    def call(pipe, **options):
        return lambda: pipe(
            prompt="a red ball",
            image=image,
            mask_image=mask,
            num_inference_steps=steps,
            num_images_per_prompt=results,
            generator=torch.Generator().manual_seed(0),
            **options,
        )

    runs = {"no ranking": call(plain), "ranking": call(ranked), "reconstruction": call(plain, reconstruction="decoder")}
    times = {name: statistics.median(seconds_of(run) for _ in range(repeats)) for name, run in runs.items()}
    return {
        "seconds": times,
        "ranking_seconds": times["ranking"] - times["no ranking"],
        "reconstruction_seconds": times["reconstruction"] - times["no ranking"],
    }


def markdown(results: dict) -> str:
    lines = [
        heading(results) + f"; load average before {results['load_before']:.2f}, after {results['load_after']:.2f}",
        "",
        f"Seconds per denoising step (steps {results['steps'][0]} and {results['steps'][1]}, {results['repeats']} runs "
        f"each, alternating; {results['side']}x{results['side']} px, 1 result, random weights):",
        "",
        "| family | diffusers' inpaint pipeline s/step | this pipeline s/step | overhead | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for family, run in results["families"].items():
        step = run["per_step"]
        verdict = "met" if step["overhead"] <= TARGET_OVERHEAD else "missed"
        lines.append(
            f"| {family} | {step['diffusers']:.4f} | {step['ours']:.4f} | {step['overhead']:+.1%} | "
            f"<= {TARGET_OVERHEAD:.0%}: {verdict} |"
        )
    lines += [
        "",
        f"What the extras cost, whole calls of this pipeline ({results['extras_steps']} steps, "
        f"{results['extras_results']} results):",
        "",
        "| family | call without ranking s | ranking adds s | decoder reconstruction adds s |",
        "| --- | --- | --- | --- |",
    ]
    for family, run in results["families"].items():
        extras = run["extras"]
        lines.append(
            f"| {family} | {extras['seconds']['no ranking']:.2f} | {extras['ranking_seconds']:+.2f} | "
            f"{extras['reconstruction_seconds']:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md)")
    parser.add_argument("--families", nargs="+", default=list(DIFFUSERS_INPAINT))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=64, help="the denoiser's channels")
    parser.add_argument("--depth", type=int, default=4, help="the transformers' blocks, in multiples of the base")
    parser.add_argument("--allow-busy", action="store_true", help="measure on a busy machine (the load is recorded)")
    parser.add_argument("--smoke", action="store_true", help="tiny and once: checks the code, not the speed")
    args = parser.parse_args()
    steps, extras_steps, repeats, width = ((2, 3), 2, 1, 16) if args.smoke else ((5, 25), 10, args.repeats, args.width)
    depth = 1 if args.smoke else args.depth
    load_before = quiet_machine(args.allow_busy or args.smoke)
    side = 128  # 32x32 latents through the 4x VAE
    image, mask = inputs(side)
    families = {}
    for family in args.families:
        reference, ours = pipelines(family, width, depth)
        families[family] = {
            "per_step": per_step(reference, ours, image, mask, steps, repeats),
            "extras": extras_cost(ours, image, mask, extras_steps, repeats, 1 if args.smoke else 4),
        }
        print(family, families[family], flush=True)
    results = {
        **provenance("families_vs_diffusers.py"),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "steps": steps,
        "extras_steps": extras_steps,
        "extras_results": 1 if args.smoke else 4,
        "repeats": repeats,
        "side": side,
        "width": width,
        "depth": depth,
        "families": families,
    }
    write_results(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
