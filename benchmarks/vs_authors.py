"""This project beside the authors' implementation (omriav/blended-diffusion), on the same weights, side by side.

Their code is run from a checkout the user points to (``--authors-dir``), not copied: their ``ImageEditor`` edits
with their guided-diffusion fork, their CLIP and their augmentations. Only their ``__init__`` is bypassed,
because it loads checkpoints from fixed paths and downloads CLIP; the benchmark builds the same objects itself,
with random weights:
- their ADM UNet (guided-diffusion layout) from a seed; ours is converted from its state dict by
  ``blended_pipeline.convert_adm.convert`` (the ``blended-convert-adm`` code), so both hold the same weights;
- their CLIP ``ViT-B/16`` (OpenAI layout) from a seed; our ``CLIPModel``'s image tower gets its weights (the
  embeddings of one picture agree to float precision, checked at start), the text towers are of equal size;
- their model's parameters set as their ``__init__`` sets them (frozen but for qkv/norm/proj), fp32 (fp16 needs
  a GPU); their plotting and video writers (``utils.visualization``, ``utils.video``) are replaced by no-ops.
Both edit the same 64 px image and mask with DDPM, the same steps, samples, views, guidance and range weights, and
the authors' CLIP input ("mixed"); runs alternate (theirs, ours, theirs, ...) and each side's median and spread
are reported. Their code also needs ``pip install kornia ftfy``.

    git clone https://github.com/omriav/blended-diffusion /tmp/blended-diffusion
    python benchmarks/vs_authors.py --authors-dir /tmp/blended-diffusion --out docs/figures/vs_authors
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import types
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import numpy as np
import PIL.Image
import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from benchmarks.common import heading, provenance, quiet_machine, write_results
from benchmarks.paper_models import VIT_B_16
from blended_pipeline import BlendedDiffusionPipeline
from blended_pipeline.convert_adm import ADMConfig, convert, scheduler_for
from blended_pipeline.shapes.tokenizer import build_tokenizer

ADM_64 = dict(image_size=64, num_channels=64)  # 25.45M parameters, the 256 px model's layout otherwise
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROMPT = "a red ball"


def authors_modules(authors_dir: Path) -> Namespace:
    """Their modules, imported from their checkout (plotting and video writers replaced by no-ops)."""
    sys.path.insert(0, str(authors_dir))
    for name, functions in {
        "utils.visualization": ("show_tensor_image", "show_editied_masked_image"),
        "utils.video": ("save_video",),
    }.items():
        module = types.ModuleType(name)
        for function in functions:
            setattr(module, function, lambda *args, **kwargs: None)
        sys.modules[name] = module
    from CLIP.clip.model import CLIP
    from guided_diffusion.guided_diffusion import script_util
    from optimization.augmentations import ImageAugmentations
    from optimization.image_editor import ImageEditor
    from utils.metrics_accumulator import MetricsAccumulator

    return Namespace(
        CLIP=CLIP,
        script_util=script_util,
        ImageAugmentations=ImageAugmentations,
        ImageEditor=ImageEditor,
        MetricsAccumulator=MetricsAccumulator,
    )


def their_model_config(theirs: Namespace, adm: ADMConfig, steps: int) -> dict:
    config = theirs.script_util.model_and_diffusion_defaults()
    config.update(
        attention_resolutions=",".join(str(r) for r in adm.attention_resolutions),
        class_cond=False,
        diffusion_steps=1000,
        rescale_timesteps=True,
        timestep_respacing=str(steps),
        image_size=adm.image_size,
        learn_sigma=True,
        noise_schedule="linear",
        num_channels=adm.num_channels,
        num_head_channels=adm.num_head_channels,
        num_res_blocks=adm.num_res_blocks,
        resblock_updown=True,
        use_fp16=False,
        use_scale_shift_norm=True,
    )
    return config


def their_clip(theirs: Namespace) -> torch.nn.Module:
    """OpenAI's ViT-B/16 CLIP, random weights; fp32 as ``clip.load`` gives on a CPU."""
    return theirs.CLIP(
        embed_dim=512,
        image_resolution=224,
        vision_layers=12,
        vision_width=768,
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12,
    ).float()


def our_clip_from(their: torch.nn.Module) -> CLIPModel:
    """A transformers ``CLIPModel`` of the same sizes whose image tower holds ``their`` image tower's weights."""
    visual = their.visual
    ours = CLIPModel(CLIPConfig(**VIT_B_16)).eval()  # QuickGELU, as OpenAI's
    tower = ours.vision_model
    state = {
        "embeddings.patch_embedding.weight": visual.conv1.weight,
        "embeddings.class_embedding": visual.class_embedding,
        "embeddings.position_embedding.weight": visual.positional_embedding,
        "pre_layrnorm.weight": visual.ln_pre.weight,
        "pre_layrnorm.bias": visual.ln_pre.bias,
        "post_layernorm.weight": visual.ln_post.weight,
        "post_layernorm.bias": visual.ln_post.bias,
    }
    for i, block in enumerate(visual.transformer.resblocks):
        prefix = f"encoder.layers.{i}."
        for name, weight, bias in zip(
            ("q_proj", "k_proj", "v_proj"),
            block.attn.in_proj_weight.chunk(3),
            block.attn.in_proj_bias.chunk(3),
            strict=True,
        ):
            state[f"{prefix}self_attn.{name}.weight"], state[f"{prefix}self_attn.{name}.bias"] = weight, bias
        for ours_name, theirs_module in (
            ("self_attn.out_proj", block.attn.out_proj),
            ("layer_norm1", block.ln_1),
            ("layer_norm2", block.ln_2),
            ("mlp.fc1", block.mlp.c_fc),
            ("mlp.fc2", block.mlp.c_proj),
        ):
            state[f"{prefix}{ours_name}.weight"], state[f"{prefix}{ours_name}.bias"] = (
                theirs_module.weight,
                theirs_module.bias,
            )
    tower.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=False)
    ours.visual_projection.weight.data.copy_(visual.proj.detach().T)
    return ours


def check_same_image_tower(their: torch.nn.Module, ours: CLIPModel) -> float:
    """The largest difference between the two towers' embeddings of one random picture (relative)."""
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs_embedding = their.encode_image(pixels).float()
        ours_embedding = ours.get_image_features(pixel_values=pixels).pooler_output
    return float((theirs_embedding - ours_embedding).abs().max() / theirs_embedding.abs().max())


def their_editor(theirs: Namespace, model, diffusion, clip, config: dict, args: Namespace, out: Path):
    """Their ``ImageEditor`` with the state their ``__init__`` would give it, but our models."""
    editor = theirs.ImageEditor.__new__(theirs.ImageEditor)
    editor.args = args
    editor.model_config = config
    editor.device = torch.device("cpu")
    editor.model, editor.diffusion = model, diffusion
    editor.clip_model = clip
    editor.clip_size = 224
    from torchvision import transforms

    editor.clip_normalize = transforms.Normalize(mean=CLIP_MEAN, std=CLIP_STD)
    editor.lpips_model = None  # used only with their background preservation loss, which is off
    editor.image_augmentations = theirs.ImageAugmentations(224, args.aug_num)
    editor.metrics_accumulator = theirs.MetricsAccumulator()
    editor.ranked_results_path = out
    return editor


def inputs(folder: Path, size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    image, mask = folder / "image.png", folder / "mask.png"
    PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(image)
    box = np.zeros((size, size), np.uint8)
    box[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    PIL.Image.fromarray(box).save(mask)
    return image, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors-dir", type=Path, required=True, help="a checkout of omriav/blended-diffusion")
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md)")
    parser.add_argument("--steps", type=int, default=5, help="guided steps run (of a 100-step schedule)")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument("--compile", action="store_true", help="also time ours with pipe.compile()")
    parser.add_argument("--allow-busy", action="store_true", help="measure on a busy machine (the load is recorded)")
    args = parser.parse_args()
    load_before = quiet_machine(args.allow_busy)  # a timing comparison is only valid with nothing else running
    theirs = authors_modules(args.authors_dir.resolve())

    adm = ADMConfig(**ADM_64)
    config = their_model_config(theirs, adm, 100)
    torch.manual_seed(0)
    model, diffusion = theirs.script_util.create_model_and_diffusion(**config)
    unet = convert({k: v.clone() for k, v in model.state_dict().items()}, adm).eval()
    model.requires_grad_(False).eval()
    for name, parameter in model.named_parameters():  # as their __init__ leaves them
        if "qkv" in name or "norm" in name or "proj" in name:
            parameter.requires_grad_()
    clip = their_clip(theirs).eval().requires_grad_(False)
    our_clip = our_clip_from(clip)
    tower_difference = check_same_image_tower(clip, our_clip)
    pipe = BlendedDiffusionPipeline(
        unet=unet,
        scheduler=scheduler_for(adm),
        clip_model=our_clip,
        tokenizer=build_tokenizer(tuple(PROMPT.split()), max_length=77),
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
    )
    pipe.set_progress_bar_config(disable=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image, mask = inputs(folder, adm.image_size)
        their_args = Namespace(
            prompt=PROMPT, init_image=str(image), mask=str(mask), invert_mask=False, batch_size=args.samples,
            iterations_num=1, skip_timesteps=100 - args.steps, ddim=False, timestep_respacing="100",
            model_output_size=256,  # their switch for "no class label"; the model itself is 64 px
            clip_guidance_lambda=1000.0, range_lambda=50.0, background_preservation_loss=False,
            lpips_sim_lambda=0.0, l2_sim_lambda=0.0, local_clip_guided_diffusion=False, enforce_background=True,
            aug_num=args.views, export_assets=False, save_video=False, output_path=tmp, output_file="out.png",
        )  # fmt: skip
        editor = their_editor(theirs, model, diffusion, clip, config, their_args, folder)
        settings = dict(
            num_inference_steps=100,
            strength=args.steps / 100,
            num_images_per_prompt=args.samples,
            num_augmentations=args.views,
            clip_guidance_scale=1000.0,
            range_loss_scale=50.0,
            clip_input="mixed",
            crop_margin=0.25,
        )

        def run_theirs() -> float:
            began = time.perf_counter()
            editor.edit_image_by_prompt()
            return time.perf_counter() - began

        def run_ours(pipeline: BlendedDiffusionPipeline) -> float:
            began = time.perf_counter()
            pipeline(PROMPT, PIL.Image.open(image), PIL.Image.open(mask), generator=torch.manual_seed(0), **settings)
            return time.perf_counter() - began

        sides = {"authors": run_theirs, "ours": lambda: run_ours(pipe)}
        if args.compile:
            compiled = BlendedDiffusionPipeline(**pipe.components)
            compiled.set_progress_bar_config(disable=True)
            compiled.compile()
            began = time.perf_counter()
            run_ours(compiled)
            compile_seconds = time.perf_counter() - began
            sides["ours, compiled"] = lambda: run_ours(compiled)
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.repeats):
            for name, run in sides.items():
                seconds[name].append(run())
                print(f"{name}: {seconds[name][-1]:.1f} s", flush=True)

    per_sample = {name: statistics.median(values) / args.samples for name, values in seconds.items()}
    results = {
        **provenance("vs_authors.py"),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "steps": args.steps,
        "samples": args.samples,
        "views": args.views,
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "image_tower_relative_difference": tower_difference,
        "seconds": seconds,
        "seconds_per_sample": per_sample,
        "compile_seconds": compile_seconds if args.compile else None,
    }
    lines = [
        heading(results) + f"; load average before {results['load_before']:.2f}, after {results['load_after']:.2f}",
        f"ADM UNet {results['unet_parameters'] / 1e6:.2f}M parameters at {adm.image_size} px (the same weights on both "
        f"sides), CLIP ViT-B/16 (image towers equal to {tower_difference:.1e}); DDPM, {args.steps} guided steps, "
        f"{args.samples} samples, {args.views} views; {args.repeats} runs each, alternating.",
        "",
        "| implementation | median s | runs (s) | s per sample | speed-up over the authors' |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, values in seconds.items():
        lines.append(
            f"| {name} | {statistics.median(values):.1f} | {', '.join(f'{v:.1f}' for v in values)} | "
            f"{per_sample[name]:.1f} | {per_sample['authors'] / per_sample[name]:.2f}x |"
        )
    if args.compile:
        lines.append(f"\nCompiling (first call of the compiled pipeline): {compile_seconds:.0f} s, not in the runs.")
    write_results(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
