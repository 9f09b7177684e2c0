"""Train the shapes world's DDPM: a small epsilon-predicting ``UNet2DModel`` on rendered scenes.

Resumable and reproducible: every step draws its scenes and noise from ``(seed, step)`` on the CPU, so a run
stopped and resumed gives the same weights as one that never stopped, and a run may move between machines
(``--device cuda``) with the same data. Run in the background, e.g.::

    python -m blended_pipeline.shapes.train_unet --out runs/unet --steps 40000
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

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
from blended_pipeline.shapes.world import random_scene, render

RESOLUTION = 32


def build_unet() -> UNet2DModel:
    """The architecture: 2.5M parameters, attention only at 8x8 where it is cheap."""
    return UNet2DModel(
        sample_size=RESOLUTION,
        in_channels=3,
        out_channels=3,
        block_out_channels=(48, 96, 96),
        layers_per_block=1,
        norm_num_groups=16,
        attention_head_dim=32,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    )


def build_scheduler() -> DDPMScheduler:
    """The cosine schedule of Improved DDPM suits small images better than the linear one."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True)


def scene_batch(seed: int, step: int, batch_size: int) -> torch.Tensor:
    """A (batch, 3, H, W) batch in [-1, 1], determined by (seed, step)."""
    rng = np.random.default_rng([seed, step])
    images = np.stack([render(random_scene(rng, RESOLUTION), RESOLUTION) for _ in range(batch_size)])
    return to_model_range(images)


class TrainingBatches(torch.utils.data.Dataset):
    """Step ``start + i``'s (clean scenes, noise, timesteps); indexable so that worker processes can render them."""

    def __init__(self, seed: int, start: int, steps: int, batch_size: int, num_train_timesteps: int) -> None:
        self.seed, self.start, self.steps, self.batch_size = seed, start, steps, batch_size
        self.num_train_timesteps = num_train_timesteps

    def __len__(self) -> int:
        return self.steps - self.start

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        step = self.start + index
        clean = scene_batch(self.seed, step, self.batch_size)
        noise_generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        noise = torch.randn(clean.shape, generator=noise_generator)
        timesteps = torch.randint(0, self.num_train_timesteps, (self.batch_size,), generator=noise_generator)
        return clean, noise, timesteps


def train(
    out: Path,
    steps: int,
    batch_size: int,
    seed: int,
    lr: float,
    save_every: int,
    device: str = "cpu",
    workers: int = 0,
    time_limit_minutes: float | None = None,
    init: Path | None = None,
) -> None:
    """Train to ``steps``, or save and stop once ``time_limit_minutes`` have passed (resume later). A new run
    starts from ``init``'s weights (a ``unet`` directory) when given, with a new optimiser and its average
    starting there: a fine-tune of a model whose training state is not at hand."""
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + 60 * time_limit_minutes if time_limit_minutes else float("inf")
    torch.manual_seed(seed)
    unet, scheduler = build_unet(), build_scheduler()
    if init is not None:
        unet.load_state_dict(UNet2DModel.from_pretrained(init).state_dict())
    unet = unet.to(device)
    ema = ExponentialMovingAverage(unet, decay=0.999)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    state_path = out / "state.pt"
    start = resume(state_path, model=unet, ema=ema, optimizer=optimizer)
    log = ProgressLog(start)
    batches = TrainingBatches(seed, start, steps, batch_size, scheduler.config.num_train_timesteps)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=workers, pin_memory=device != "cpu")
    for step, (clean, noise, timesteps) in enumerate(loader, start):
        clean, noise, timesteps = clean.to(device), noise.to(device), timesteps.to(device)
        loss = F.mse_loss(unet(scheduler.add_noise(clean, noise, timesteps), timesteps).sample, noise)
        apply_gradients(unet, optimizer, loss, learning_rate(step, steps, lr))
        ema.update(unet)
        done = step + 1
        log.add(done, loss.detach())
        out_of_time = time.monotonic() > deadline
        if done % save_every == 0 or done == steps or out_of_time:
            save_state(state_path, done, model=unet, ema=ema, optimizer=optimizer)
            ema.copy_to(build_unet()).save_pretrained(out / "unet")
            scheduler.save_pretrained(out / "scheduler")
        if out_of_time:
            print(f"time limit reached: saved at step {done}", flush=True)
            break


def main() -> None:
    parser = training_parser(__doc__.splitlines()[0], steps=40_000)
    parser.add_argument("--device", default="cpu", help="where the model trains, e.g. cuda; the data stays the same")
    parser.add_argument("--workers", type=int, default=0, help="processes rendering batches ahead (0: inline)")
    parser.add_argument("--time-limit", type=float, default=None, metavar="MINUTES", help="save and stop after this")
    parser.add_argument("--init", type=Path, help="a unet directory whose weights a new run starts from")
    args = parse_training_arguments(parser)
    train(
        args.out,
        args.steps,
        args.batch_size,
        args.seed,
        args.lr,
        args.save_every,
        args.device,
        args.workers,
        args.time_limit,
        args.init,
    )


if __name__ == "__main__":
    main()
