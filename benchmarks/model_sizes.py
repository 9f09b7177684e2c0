"""What each family's real checkpoint weighs, on paper: parameters counted from the published architectures.

    python benchmarks/model_sizes.py --out docs/figures/model_sizes

Each model is built on PyTorch's meta device (no memory, no download) from its published configuration, written
out below, and what its checkpoint holds counted (parameters and persistent buffers); the weights' memory follows
at 2 bytes a number (bf16/fp16) and 4 (fp32). Activations come on top and grow with the resolution; offloading
(``enable_model_cpu_offload``) keeps only the running model on the GPU, so the largest single model bounds its
peak.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

from benchmarks.common import heading, provenance, write_results

CLIP_L = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    vocab_size=49408,
    max_position_embeddings=77,
    projection_dim=768,
)
CLIP_BIG_G = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    vocab_size=49408,
    max_position_embeddings=77,
    projection_dim=1280,
    hidden_act="gelu",
)
T5_XXL = dict(
    vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu"
)
VAE_4 = dict(
    block_out_channels=(128, 256, 512, 512),
    latent_channels=4,
    layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
)
VAE_16 = dict(VAE_4, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)
SD15_UNET = dict(cross_attention_dim=768, attention_head_dim=8)
SDXL_UNET = dict(
    sample_size=128,
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
SD35_MEDIUM = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    out_channels=16,
    num_layers=24,
    attention_head_dim=64,
    num_attention_heads=24,
    joint_attention_dim=4096,
    caption_projection_dim=1536,
    pooled_projection_dim=2048,
    pos_embed_max_size=384,
    dual_attention_layers=tuple(range(13)),
    qk_norm="rms_norm",
)
FLUX_DEV = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)

FAMILIES = {
    "sd (1.5)": [
        ("unet", "UNet2DConditionModel", SD15_UNET),
        ("text_encoder", "CLIPTextModel", CLIP_L),
        ("vae", "AutoencoderKL", VAE_4),
    ],
    "sdxl (base 1.0)": [
        ("unet", "UNet2DConditionModel", SDXL_UNET),
        ("text_encoder", "CLIPTextModel", CLIP_L),
        ("text_encoder_2", "CLIPTextModelWithProjection", CLIP_BIG_G),
        ("vae", "AutoencoderKL", VAE_4),
    ],
    "sd3 (3.5 medium)": [
        ("transformer", "SD3Transformer2DModel", SD35_MEDIUM),
        ("text_encoder", "CLIPTextModelWithProjection", CLIP_L),
        ("text_encoder_2", "CLIPTextModelWithProjection", CLIP_BIG_G),
        ("text_encoder_3", "T5EncoderModel", T5_XXL),
        ("vae", "AutoencoderKL", VAE_16),
    ],
    "flux (1 dev)": [
        ("transformer", "FluxTransformer2DModel", FLUX_DEV),
        ("text_encoder", "CLIPTextModel", CLIP_L),
        ("text_encoder_2", "T5EncoderModel", T5_XXL),
        ("vae", "AutoencoderKL", VAE_16),
    ],
}


def parameters(class_name: str, config: dict) -> int:
    """The numbers ``class_name`` built from ``config`` on the meta device saves: its parameters and persistent
    buffers (SD3's position embedding is one)."""
    import diffusers
    import transformers

    with torch.device("meta"):
        if hasattr(diffusers, class_name):
            model = getattr(diffusers, class_name)(**config)
        else:
            config_class = transformers.T5Config if class_name.startswith("T5") else transformers.CLIPTextConfig
            model = getattr(transformers, class_name)(config_class(**config))
    saved = model.state_dict().keys()  # lists a tied weight twice: count parameters and buffers once each
    buffers = sum(buffer.numel() for name, buffer in model.named_buffers() if name in saved)
    return sum(parameter.numel() for parameter in model.parameters()) + buffers


def markdown(results: dict) -> str:
    lines = [
        heading(results),
        "",
        "| family | component | parameters (M) | bf16 GB | fp32 GB |",
        "| --- | --- | --- | --- | --- |",
    ]
    for family, parts in results["families"].items():
        for name, count in parts.items():
            lines.append(f"| {family} | {name} | {count / 1e6:,.0f} | {2 * count / 1e9:.2f} | {4 * count / 1e9:.2f} |")
        total = sum(parts.values())
        lines.append(f"| {family} | **all** | {total / 1e6:,.0f} | {2 * total / 1e9:.2f} | {4 * total / 1e9:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md)")
    args = parser.parse_args()
    families = {
        family: {name: parameters(class_name, config) for name, class_name, config in parts}
        for family, parts in FAMILIES.items()
    }
    write_results(
        args.out,
        {**provenance("model_sizes.py"), "families": families},
        markdown({**provenance("model_sizes.py"), "families": families}),
    )


if __name__ == "__main__":
    main()
