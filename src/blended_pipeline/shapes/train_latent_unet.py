"""Train the shapes latent world's text-conditioned UNet on the trained autoencoder's latents.

The text encoder is the shipped shapes CLIP's text tower, frozen (its weights are reused, not retrained); the
UNet predicts the noise of 8x8x4 latents with Stable Diffusion's noise schedule, and one caption in ten is
dropped (empty) so that classifier-free guidance works; ``--one-shape-captions`` names a single shape of the scene
in a share of them, as edit prompts do, and ``--size-range`` draws the shapes' sizes from another range than the
world's (both kept in the run's ``captions.json``); ``--init`` starts a new run from a trained UNet's weights.
Resumable and reproducible like the other scripts::

    python -m blended_pipeline.shapes.train_latent_unet --vae runs/vae --out runs/latent-unet --steps 8000 --threads 1
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

from blended_pipeline import SHAPES_CHECKPOINT
from blended_pipeline.shapes.train_unet import RESOLUTION
from blended_pipeline.shapes.training_utils import (
    ExponentialMovingAverage,
    ProgressLog,
    apply_gradients,
    learning_rate,
    parse_training_arguments,
    resume,
    save_state,
    to_model_range,
    training_parser,
)
from blended_pipeline.shapes.world import SHAPE_SIZE_RANGE, random_scene, render

CAPTION_DROP = 0.1  # empty captions, for classifier-free guidance
OBJECTS_ONLY = 0.4  # captions naming the shapes alone, as edit prompts do ("a red circle")
WHOLE_CAPTIONS = 1 - CAPTION_DROP - OBJECTS_ONLY  # the share one-shape captions are taken from
CHANNELS = (32, 64)


def build_latent_unet(channels: tuple[int, int] = CHANNELS) -> UNet2DConditionModel:
    """Cross-attention to the text at 8x8 and 4x4; ``channels`` per resolution set its size."""
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=channels,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=128,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def build_latent_scheduler() -> DDIMScheduler:
    """Stable Diffusion's schedule (scaled linear betas); DDIM, as Blended Latent Diffusion samples."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def shapes_text_encoder() -> tuple[CLIPTextModel, CLIPTokenizer]:
    """The shipped shapes CLIP's text tower, as a stand-alone ``CLIPTextModel``."""
    clip = CLIPModel.from_pretrained(Path(SHAPES_CHECKPOINT) / "clip_model")
    text_encoder = CLIPTextModel(clip.config.text_config)
    text_encoder.load_state_dict(clip.text_model.state_dict())
    return text_encoder.eval(), CLIPTokenizer.from_pretrained(Path(SHAPES_CHECKPOINT) / "tokenizer")


def caption_batch(
    seed: int,
    step: int,
    batch_size: int,
    one_shape: float = 0.0,
    size_range: tuple[float, float] = SHAPE_SIZE_RANGE,
) -> tuple[torch.Tensor, list[str]]:
    """Scenes in [-1, 1] and their captions (whole, objects only, one of the shapes, or empty), determined by
    (seed, step). ``one_shape`` of the captions, taken from the whole ones' share, name a single shape of the
    scene, as an edit's prompt does: "a red circle" then means that the scene holds one, not that it holds only
    one. ``size_range``: the shapes' sides, as fractions of the image side."""
    rng = np.random.default_rng([seed, step])
    scenes = [random_scene(rng, RESOLUTION, size_range=size_range) for _ in range(batch_size)]
    captions = []
    for scene in scenes:
        draw = rng.random()
        if draw < CAPTION_DROP:
            captions.append("")
        elif draw < CAPTION_DROP + OBJECTS_ONLY:
            captions.append(" and ".join(f"a {s.colour} {s.kind}" for s in scene.shapes))
        elif draw < CAPTION_DROP + OBJECTS_ONLY + one_shape:
            named = scene.shapes[int(rng.integers(len(scene.shapes)))]
            captions.append(f"a {named.colour} {named.kind}")
        else:
            captions.append(scene.caption())
    return to_model_range(np.stack([render(scene, RESOLUTION) for scene in scenes])), captions


@torch.no_grad()
def encode_text(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    tokens = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
    return text_encoder(tokens.input_ids.to(text_encoder.device)).last_hidden_state


@torch.no_grad()
def encode_images(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    return vae.encode(images).latent_dist.mean * vae.config.scaling_factor


def latent_scale(vae: AutoencoderKL, seed: int = 12345, count: int = 256) -> float:
    """``1 / std`` of the latents of ``count`` scenes: Stable Diffusion's ``scaling_factor`` convention."""
    images, _ = caption_batch(seed, 0, count)
    with torch.no_grad():
        return float(1 / vae.encode(images).latent_dist.mean.std())


def train(
    out: Path,
    vae_dir: Path,
    steps: int,
    batch_size: int,
    seed: int,
    lr: float,
    save_every: int,
    channels: tuple[int, int] = CHANNELS,
    one_shape_captions: float = 0.0,
    size_range: tuple[float, float] = SHAPE_SIZE_RANGE,
    init: Path | None = None,
) -> None:
    saved = out / "unet" / "config.json"
    trained = tuple(json.loads(saved.read_text())["block_out_channels"]) if saved.exists() else tuple(channels)
    if trained != tuple(channels):
        listed = " ".join(str(c) for c in trained)
        raise ValueError(f"{out} holds a run of a UNet with channels {listed}: resume it with --channels {listed}")
    if not 0 <= one_shape_captions <= WHOLE_CAPTIONS:
        raise ValueError(f"one-shape captions must be a share in [0, {WHOLE_CAPTIONS:g}], got {one_shape_captions}")
    low, high = size_range
    if not 0 < low <= high <= 1:
        raise ValueError(f"the size range must be two fractions of the side, 0 < LOW <= HIGH <= 1, got {low} {high}")
    recipe = out / "captions.json"  # absent in runs from before the options: one-shape captions 0, the world's sizes
    held = json.loads(recipe.read_text()) if recipe.exists() else {}
    named = held.get("one_shape_captions", 0.0)
    if saved.exists() and named != one_shape_captions:
        raise ValueError(
            f"{out} holds a run with one-shape captions {named:g}: resume it with --one-shape-captions {named:g}"
        )
    sizes = tuple(held.get("size_range", SHAPE_SIZE_RANGE))
    if saved.exists() and sizes != tuple(size_range):
        listed = " ".join(f"{v:g}" for v in sizes)
        raise ValueError(f"{out} holds a run with shape sizes {listed}: resume it with --size-range {listed}")
    torch.manual_seed(seed)
    vae = AutoencoderKL.from_pretrained(vae_dir).eval()
    vae.register_to_config(scaling_factor=latent_scale(vae))
    text_encoder, tokenizer = shapes_text_encoder()
    unet, noise_schedule = build_latent_unet(channels), DDPMScheduler.from_config(build_latent_scheduler().config)
    if init is not None and not saved.exists():
        start = UNet2DConditionModel.from_pretrained(init)
        if tuple(start.config.block_out_channels) != tuple(channels):
            listed = " ".join(str(c) for c in start.config.block_out_channels)
            raise ValueError(f"{init} holds a UNet with channels {listed}: start from it with --channels {listed}")
        unet.load_state_dict(start.float().state_dict())
    ema = ExponentialMovingAverage(unet, decay=0.999)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    out.mkdir(parents=True, exist_ok=True)
    started_from = held.get("init") if saved.exists() else None if init is None else str(init)
    recipe.write_text(
        json.dumps({"one_shape_captions": one_shape_captions, "size_range": list(size_range), "init": started_from})
        + "\n"
    )
    state_path = out / "state.pt"
    start = resume(state_path, model=unet, ema=ema, optimizer=optimizer)
    log = ProgressLog(start)
    for step in range(start, steps):
        images, captions = caption_batch(seed, step, batch_size, one_shape_captions, size_range)
        latents, text = encode_images(vae, images), encode_text(text_encoder, tokenizer, captions)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, noise_schedule.config.num_train_timesteps, (batch_size,), generator=generator)
        prediction = unet(noise_schedule.add_noise(latents, noise, timesteps), timesteps, text).sample
        loss = F.mse_loss(prediction, noise)
        apply_gradients(unet, optimizer, loss, learning_rate(step, steps, lr))
        ema.update(unet)
        done = step + 1
        log.add(done, loss.detach())
        if done % save_every == 0 or done == steps:
            save_state(state_path, done, model=unet, ema=ema, optimizer=optimizer)
            ema.copy_to(build_latent_unet(channels)).save_pretrained(out / "unet")
            vae.save_pretrained(out / "vae")  # with the measured scaling_factor


def main() -> None:
    parser = training_parser(__doc__.splitlines()[0], steps=8000)
    parser.add_argument("--vae", type=Path, required=True, help="run directory of train_vae")
    parser.add_argument(
        "--channels",
        type=int,
        nargs=2,
        default=CHANNELS,
        help="the UNet's channels at 8x8 and 4x4 (a resumed run's own)",
    )
    parser.add_argument(
        "--one-shape-captions",
        type=float,
        default=0.0,
        help="share of captions naming one shape of the scene, as edit prompts do (a resumed run's own)",
    )
    parser.add_argument(
        "--size-range",
        type=float,
        nargs=2,
        default=SHAPE_SIZE_RANGE,
        metavar=("LOW", "HIGH"),
        help="the training scenes' shape sizes, as fractions of the side (default the world's; a resumed run's own)",
    )
    parser.add_argument(
        "--init",
        type=Path,
        help="a unet directory whose weights a new run starts from (kept in the run's captions.json; a resumed run "
        "goes on from its own state)",
    )
    args = parse_training_arguments(parser)
    began = time.time()
    run = (args.out, args.vae / "vae", args.steps, args.batch_size, args.seed, args.lr, args.save_every)
    try:
        train(*run, tuple(args.channels), args.one_shape_captions, tuple(args.size_range), args.init)
    except ValueError as error:
        parser.error(str(error))
    print(f"done in {time.time() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
