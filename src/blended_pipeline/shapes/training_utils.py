"""Small pieces shared by the two training scripts."""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def atomic_torch_save(obj: object, path: Path) -> None:
    """Save to a temporary name, then rename, so that a killed run never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class ExponentialMovingAverage:
    """EMA of a model's weights, with the usual warm-up so that early averages are not stuck at init."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        floating = [name for name, value in current.items() if value.dtype.is_floating_point]
        torch._foreach_lerp_([self.shadow[n] for n in floating], [current[n] for n in floating], 1 - decay)
        for name, value in current.items():
            if not value.dtype.is_floating_point:
                self.shadow[name].copy_(value)

    def copy_to(self, model: torch.nn.Module) -> torch.nn.Module:
        model.load_state_dict(self.shadow)
        return model

    def state_dict(self) -> dict:
        return {"shadow": self.shadow, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        """Load a saved average onto the device of the model it averages."""
        self.shadow = {name: value.to(self.shadow[name].device, copy=True) for name, value in state["shadow"].items()}
        self.updates = state["updates"]


def learning_rate(step: int, total: int, peak: float, warmup: int = 500) -> float:
    """Linear warm-up, then cosine decay to zero at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def resume(path: Path, **parts: Any) -> int:
    """Load each part's state from ``path`` if it exists; the step to continue from (0 for a new run)."""
    if not path.exists():
        return 0
    state = load_state(path)
    for name, part in parts.items():
        part.load_state_dict(state[name])
    print(f"resumed at step {state['step']}", flush=True)
    return state["step"]


def load_state(path: Path) -> dict:
    """A state written by ``save_state``, its tensors on the CPU wherever it was trained."""
    return torch.load(path, weights_only=True, map_location="cpu")


def save_state(path: Path, step: int, **parts: Any) -> None:
    atomic_torch_save({"step": step, **{name: part.state_dict() for name, part in parts.items()}}, path)


def apply_gradients(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, lr: float) -> None:
    """One optimisation step at learning rate ``lr``, gradients clipped to norm 1."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


class ProgressLog:
    """Prints the mean loss and the seconds per step every ``every`` steps."""

    def __init__(self, start: int, every: int = 100) -> None:
        self.start, self.every, self.began, self.losses = start, every, time.time(), []

    def add(self, step: int, loss: torch.Tensor) -> None:
        """Record a step's loss; kept as a tensor so that a GPU run synchronises only when it prints."""
        self.losses.append(loss)
        if step % self.every == 0:
            rate = (time.time() - self.began) / (step - self.start)
            mean = torch.stack(self.losses[-self.every :]).mean().item()
            self.losses = self.losses[-self.every :]
            print(f"step {step} loss {mean:.4f} {rate:.3f} s/step", flush=True)


def training_parser(
    description: str, steps: int, batch_size: int = 32, save_every: int = 500
) -> argparse.ArgumentParser:
    """The options every training script takes (the run directory, the run's length and pace, CPU threads)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True, help="run directory (resumed if it holds state.pt)")
    parser.add_argument("--steps", type=int, default=steps, help="total optimisation steps of the run")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--save-every", type=int, default=save_every)
    return parser


def parse_training_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The command line's arguments, with torch set to the threads asked for."""
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


@torch.no_grad()
def vae_round_trip(vae: Any, images: torch.Tensor) -> torch.Tensor:
    """``images`` (in [-1, 1]) encoded to their posterior means and decoded: what every latent result goes through."""
    return vae.decode(vae.encode(images).latent_dist.mean).sample
