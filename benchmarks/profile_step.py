"""Where the time of one guided step goes: each phase timed on its own, with the device synchronised between.

A step of Algorithm 2 is: the UNet's forward pass, ``x0_hat``, the augmented views, CLIP's forward pass and loss,
the backward passes (CLIP, the augmentations, the UNet), the scheduler step and the blend. The ranking at the end
runs once per edit; it is timed too. Phases are run in that order on the pipeline's own parts, ``repeats`` times
after one warm-up step, and the median of each is reported.

    python benchmarks/profile_step.py --model shapes --out docs/figures/profile_step-shapes          # the demo
    python benchmarks/profile_step.py --model adm64 --out docs/figures/profile_step-adm64            # 64 px ADM
    python benchmarks/profile_step.py --model paper --device cuda --out docs/figures/profile_step-paper  # a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from benchmarks.common import heading, provenance, unet_layout, write_results
from benchmarks.paper_models import VIT_B_16
from blended_pipeline import SHAPES_CHECKPOINT, BlendedDiffusionPipeline
from blended_pipeline.convert_adm import ADMConfig, scheduler_for, unet_for
from blended_pipeline.guidance import CLIPGuidance, range_loss
from blended_pipeline.ranking import rank
from blended_pipeline.shapes.tokenizer import build_tokenizer

ADM_SIZES = {"adm64": dict(image_size=64, num_channels=64), "paper": {}}  # paper: ADM-256, 552.8M parameters
PHASES = (
    "unet forward",
    "augmentations",
    "clip forward + loss",
    "clip backward",
    "augmentations backward",
    "unet backward",
    "scheduler step",
    "blend",
)


def build(model: str) -> BlendedDiffusionPipeline:
    """The shipped shapes pipeline, or random weights at the ADM sizes with CLIP ViT-B/16."""
    if model == "shapes":
        return BlendedDiffusionPipeline.from_pretrained(SHAPES_CHECKPOINT)
    torch.manual_seed(0)
    adm = ADMConfig(**ADM_SIZES[model])
    return BlendedDiffusionPipeline(
        unet=unet_for(adm).eval(),
        scheduler=scheduler_for(adm),
        clip_model=CLIPModel(CLIPConfig(**VIT_B_16)).eval(),
        tokenizer=build_tokenizer(("a", "red", "ball"), max_length=77),
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
    )


class PhaseClock:
    """Wall time per named phase; the device is synchronised before each reading."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, list[float]] = defaultdict(list)

    def time(self, name: str, work: Callable[[], object]) -> object:
        self._sync()
        began = time.perf_counter()
        result = work()
        self._sync()
        self.seconds[name].append(time.perf_counter() - began)
        return result

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def guided_step(pipe: BlendedDiffusionPipeline, clock: PhaseClock, latents, image, mask, target, t, views: int):
    """One step of the pipeline's loop, phase by phase (the same operations as ``guided_noise_prediction`` and
    ``GuidanceLoss``, with the backward pass split at the views and at ``x0_hat``)."""
    guidance = CLIPGuidance(pipe.clip_model, pipe.tokenizer, pipe.feature_extractor)
    alpha_bar = pipe.scheduler.alphas_cumprod.to(latents.device)[t].float()
    with torch.enable_grad():
        x_t = latents.detach().requires_grad_(True)
        output = clock.time("unet forward", lambda: pipe.unet(x_t, t).sample.float())
        noise = output[:, :3]
        x0_hat = (x_t - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()
        judged = x0_hat.detach().requires_grad_(True)
        augmented = clock.time("augmentations", lambda: pipe.augmentation(judged * mask, views, None))
        seen = augmented.detach().requires_grad_(True)

        def clip_loss() -> torch.Tensor:
            loss = 1000 * guidance.loss(seen, target).view(views, -1).mean(dim=0)
            return (loss + 50 * range_loss(judged.detach())).sum()

        loss = clock.time("clip forward + loss", clip_loss)
        grad_views = clock.time("clip backward", lambda: torch.autograd.grad(loss, seen)[0])
        grad_x0 = clock.time("augmentations backward", lambda: torch.autograd.grad(augmented, judged, grad_views)[0])
        grad_xt = clock.time("unet backward", lambda: torch.autograd.grad(x0_hat, x_t, grad_x0)[0])
    guided = noise.detach() + (1 - alpha_bar).sqrt() * grad_xt
    if pipe._scheduler_uses_learned_variance():  # the ADM models' extra channels
        guided = torch.cat([guided, output[:, 3:].detach()], dim=1)
    latents = clock.time("scheduler step", lambda: pipe.scheduler.step(guided, t, latents).prev_sample)
    noised = pipe.scheduler.add_noise(image, torch.randn_like(image), t.view(1))
    return clock.time("blend", lambda: latents * mask + noised * (1 - mask))


def profile(pipe: BlendedDiffusionPipeline, device: torch.device, samples: int, views: int, repeats: int) -> dict:
    size = pipe.unet.config.sample_size
    generator = torch.Generator().manual_seed(0)
    image = (torch.rand(samples, 3, size, size, generator=generator) * 2 - 1).to(device)
    mask = torch.zeros(samples, 1, size, size, device=device)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    pipe.scheduler.set_timesteps(100, device=device)
    t = pipe.scheduler.timesteps[50]
    guidance = CLIPGuidance(pipe.clip_model, pipe.tokenizer, pipe.feature_extractor)
    target = guidance.prepare(["a red circle"] * samples, device)
    latents = image.clone()
    warm = PhaseClock(device)
    guided_step(pipe, warm, latents, image, mask, target, t, views)
    clock = PhaseClock(device)
    for _ in range(repeats):
        began = time.perf_counter()
        latents = guided_step(pipe, clock, latents, image, mask, target, t, views)
        clock.seconds["whole step"].append(time.perf_counter() - began)
    with torch.no_grad():
        clock.time("ranking (once per edit)", lambda: rank(guidance, latents, mask, target, "both", samples))
    return {name: statistics.median(values) for name, values in clock.seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("shapes", "adm64", "paper"), default="shapes")
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--channels-last", action="store_true", help="the UNet's weights in NHWC")
    args = parser.parse_args()
    device = torch.device(args.device)
    pipe = build(args.model).to(device)
    if args.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
    seconds = profile(pipe, device, args.samples, args.views, args.repeats)
    whole = seconds["whole step"]
    results = {
        **provenance("profile_step.py"),
        "model": args.model,
        "device": str(device),
        "unet_layout": unet_layout(pipe.unet),
        "seconds": seconds,
    }
    header = f"{heading(results)}; device: {device}"
    lines = [header, "", "| phase | ms | share of a step |", "| --- | --- | --- |"]
    lines += [f"| {name} | {seconds[name] * 1000:.1f} | {seconds[name] / whole:.0%} |" for name in PHASES]
    lines += [f"| whole step | {whole * 1000:.1f} | 100% |"]
    lines += [f"| ranking (once per edit) | {seconds['ranking (once per edit)'] * 1000:.1f} | |"]
    write_results(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
