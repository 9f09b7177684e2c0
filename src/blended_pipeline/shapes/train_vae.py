"""Train the shapes latent world's autoencoder: a small ``AutoencoderKL``, 32x32x3 scenes to 8x8x4 latents.

Resumable and reproducible like the pixel model's training (each step's scenes come from ``(seed, step)``)::

    python -m blended_pipeline.shapes.train_vae --out runs/vae --steps 6000 --threads 1

The loss is the reconstruction's MSE plus a small KL term that keeps the latents near a unit Gaussian's scale,
so the diffusion model on them can use the usual noise schedules; the export measures the latents' spread and
stores ``1 / std`` as the VAE's ``scaling_factor`` (Stable Diffusion's convention).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from blended_pipeline.shapes.train_unet import RESOLUTION, scene_batch
from blended_pipeline.shapes.training_utils import (
    ExponentialMovingAverage,
    ProgressLog,
    apply_gradients,
    learning_rate,
    parse_training_arguments,
    resume,
    save_state,
    training_parser,
)

LATENT_CHANNELS = 4
KL_WEIGHT = 1e-5


def build_vae() -> AutoencoderKL:
    """About 1M parameters: two downsamplings, 32 px to 8x8 latents."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        norm_num_groups=16,
        sample_size=RESOLUTION,
    )


def vae_loss(vae: AutoencoderKL, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    posterior = vae.encode(clean).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=generator).to(clean.device)
    reconstruction = vae.decode(posterior.mean + posterior.std * noise).sample
    return F.mse_loss(reconstruction, clean) + KL_WEIGHT * posterior.kl().mean()


def train(out: Path, steps: int, batch_size: int, seed: int, lr: float, save_every: int, device: str = "cpu") -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vae = build_vae().to(device)
    ema = ExponentialMovingAverage(vae, decay=0.999)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    state_path = out / "state.pt"
    start = resume(state_path, model=vae, ema=ema, optimizer=optimizer)
    log = ProgressLog(start)
    for step in range(start, steps):
        clean = scene_batch(seed, step, batch_size).to(device)
        loss = vae_loss(vae, clean, torch.Generator().manual_seed(seed * 1_000_003 + step))
        apply_gradients(vae, optimizer, loss, learning_rate(step, steps, lr))
        ema.update(vae)
        done = step + 1
        log.add(done, loss.detach())
        if done % save_every == 0 or done == steps:
            save_state(state_path, done, model=vae, ema=ema, optimizer=optimizer)
            ema.copy_to(build_vae()).save_pretrained(out / "vae")


def main() -> None:
    parser = training_parser(__doc__.splitlines()[0], steps=6000)
    parser.add_argument("--device", default="cpu")
    args = parse_training_arguments(parser)
    began = time.time()
    train(args.out, args.steps, args.batch_size, args.seed, args.lr, args.save_every, args.device)
    print(f"done in {time.time() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
