"""Train the shapes world's CLIP contrastively on (view, caption) pairs, and its tokenizer.

Guidance and ranking show CLIP the masked region on a grey surround, so besides whole scenes it is trained on
box views of one shape ("a red circle"), of bare background ("a blue background") and on scenes whose object
is greyed out ("a blue background"), some warped like the extending augmentations. Several images in a batch
share a caption, so the contrastive target spreads over all matching captions. A CLIP that ranks a latent model's
results can also see a share of its views through that model's VAE (``--vae``), since those results are decoded
and so blurred at the shapes' edges. Resumable, like the UNet::

    python -m blended_pipeline.shapes.train_clip --out runs/clip --steps 3000
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

from blended_pipeline.augment import ProjectiveAugmentation
from blended_pipeline.guidance import clip_pixel_values
from blended_pipeline.shapes.tokenizer import build_tokenizer
from blended_pipeline.shapes.train_unet import RESOLUTION
from blended_pipeline.shapes.training_utils import (
    ProgressLog,
    apply_gradients,
    learning_rate,
    parse_training_arguments,
    resume,
    save_state,
    to_model_range,
    training_parser,
    vae_round_trip,
)
from blended_pipeline.shapes.world import (
    PALETTE,
    SHAPE_PROMPTS,
    VOCABULARY,
    Scene,
    Shape,
    background_phrase,
    box_mask,
    ellipse_mask,
    random_box,
    random_scene,
    render,
    shape_mask,
)

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_clip(tokenizer: CLIPTokenizer) -> CLIPModel:
    """A 1.1M-parameter CLIP: a ViT with 4x4 patches on 32x32 images and a 3-layer text transformer."""
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            image_size=RESOLUTION,
            patch_size=4,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
        ),
        projection_dim=64,
    )
    return CLIPModel(config)


def build_feature_extractor() -> CLIPImageProcessor:
    return CLIPImageProcessor(
        size={"shortest_edge": RESOLUTION},
        crop_size={"height": RESOLUTION, "width": RESOLUTION},
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )


MISDRAWN_MARGIN = 0.1  # in cosine similarity: how much better a shape drawn right must match its caption

REGION_KINDS: tuple[str, ...] = ("square", "varied")
"""How guidance regions are drawn in the box views: "square", boxes of 45-65% of the side (the shipped model's
first 7,000 steps); "varied", also small squares (35%), boxes up to 1.7 times as wide as high or as high as wide,
and ellipses, the regions users mask and the hard edits ask for, which square boxes alone left CLIP unused to."""


CAPTION_KINDS: tuple[str, ...] = ("last", "visible")
"""What a shape-box view's caption names: "last", the shape the region was drawn around (the shipped model's first
9,500 steps), although another shape may show in the region too, which taught CLIP to overlook such fragments;
"visible", every shape with a pixel in the region, so that a fragment of another colour counts against a caption
naming one shape, as it counts against an edit."""


def training_view(
    rng: np.random.Generator, regions: str = "square", captions: str = "last"
) -> tuple[np.ndarray, np.ndarray, str]:
    """(image uint8 HxWx3, keep-mask bool HxW, caption): one view of the kinds guidance and ranking show."""
    kind = rng.choice(["scene", "shape_box", "background_box", "object_removed"], p=[0.3, 0.4, 0.15, 0.15])
    if kind == "scene":
        scene = random_scene(rng, RESOLUTION)
        objects = " and ".join(f"a {s.colour} {s.kind}" for s in scene.shapes)
        caption = scene.caption() if rng.random() < 0.5 else objects
        return render(scene, RESOLUTION), np.ones((RESOLUTION, RESOLUTION), bool), caption
    if kind == "shape_box":
        scene = random_scene(rng, RESOLUTION, num_shapes=1 if rng.random() < 0.7 else 2)
        shape = scene.shapes[-1]
        if regions == "varied":
            region = varied_region(rng, shape_mask(shape.kind, shape.center, shape.size, RESOLUTION))
        else:
            region = square_region_around(rng, shape)
        caption = objects_in(scene, region) if captions == "visible" else f"a {shape.colour} {shape.kind}"
        return render(scene, RESOLUTION), region, caption
    scene = random_scene(rng, RESOLUTION, num_shapes=1, two_bands=False)
    shape = scene.shapes[0]
    covered = shape_mask(shape.kind, shape.center, shape.size, RESOLUTION)
    if kind == "background_box":
        keep = (
            varied_region(rng)
            if regions == "varied"
            else box_mask(random_box(rng, RESOLUTION, (0.35, 0.55)), RESOLUTION)
        )
        image = render(Scene(scene.background, scene.split, ()), RESOLUTION)
        return image, keep, background_phrase(scene.background)
    grown = np.zeros_like(covered)
    ys, xs = np.nonzero(covered)
    margin = int(rng.integers(0, 4))
    grown[max(0, ys.min() - margin) : ys.max() + margin + 1, max(0, xs.min() - margin) : xs.max() + margin + 1] = True
    return render(scene, RESOLUTION), ~grown, background_phrase(scene.background)


def square_region_around(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """A square of 45-65% of the side (at least the shape's size) that holds the shape."""
    side = int(round(rng.uniform(0.45, 0.65) * RESOLUTION))
    side = max(side, int(np.ceil(shape.size)) + 1)
    low = np.clip(np.array(shape.center) + shape.size / 2 - side, 0, RESOLUTION - side)
    high = np.clip(np.array(shape.center) - shape.size / 2, 0, RESOLUTION - side)
    left, top = (int(rng.integers(int(lo), int(max(lo, hi)) + 1)) for lo, hi in zip(low, high, strict=True))
    return box_mask((left, top, left + side, top + side), RESOLUTION)


def objects_in(scene: Scene, region: np.ndarray) -> str:
    """ "a {colour} {shape}" for each shape with a pixel in ``region`` where it is drawn (not under a later one),
    joined by "and" in the scene's order, as scene captions list objects."""
    covered, seen = np.zeros_like(region), []
    for shape in reversed(scene.shapes):
        pixels = shape_mask(shape.kind, shape.center, shape.size, RESOLUTION) & ~covered
        if (pixels & region).any():
            seen.append(f"a {shape.colour} {shape.kind}")
        covered |= pixels
    return " and ".join(reversed(seen))


def varied_region(rng: np.random.Generator, inside: np.ndarray | None = None, tries: int = 50) -> np.ndarray:
    """A square (35-65% of the side), a box of aspect 1.3-1.7 either way (short side 35-50%) or an ellipse (45-65%
    across, 70-100% of that the other way), placed at random; with ``inside``, one that holds all of its pixels
    (drawn again up to ``tries`` times, then the region's box grown to the pixels' box if still short)."""
    ys, xs = np.mgrid[:RESOLUTION, :RESOLUTION] + 0.5
    for _ in range(tries):
        form = rng.choice(["square", "oblong", "ellipse"], p=[0.4, 0.3, 0.3])
        if form == "square":
            width = height = rng.uniform(0.35, 0.65) * RESOLUTION
        elif form == "oblong":
            height = rng.uniform(0.35, 0.5) * RESOLUTION
            width = min(height * rng.uniform(1.3, 1.7), RESOLUTION)
        else:
            width = rng.uniform(0.45, 0.65) * RESOLUTION
            height = width * rng.uniform(0.7, 1.0)
        if rng.random() < 0.5:
            width, height = height, width
        cx, cy = rng.uniform(width / 2, RESOLUTION - width / 2), rng.uniform(height / 2, RESOLUTION - height / 2)
        if form == "ellipse":
            region = ellipse_mask((cx, cy), width, height, RESOLUTION)
        else:
            region = (np.abs(xs - cx) <= width / 2) & (np.abs(ys - cy) <= height / 2)
        if inside is None or not (inside & ~region).any():
            return region
    rows, cols = np.nonzero(inside)
    return region | box_mask((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1), RESOLUTION)


def misdrawn(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """The pixels of ``shape`` drawn wrong in its place: stretched (a circle or triangle as a long ellipse, a square
    as a long box), lumpy (a few overlapping discs) or bitten. The world never holds such a blob; a weak generator
    makes them, and a CLIP that ranks must score them below the shape."""
    (cx, cy), size = shape.center, shape.size
    form = rng.choice(["stretched", "lumpy", "bitten"])
    if form == "stretched":
        factor = rng.uniform(1.6, 2.2)
        width, height = (size * factor, size / factor) if rng.random() < 0.5 else (size / factor, size * factor)
        if shape.kind == "square":
            left, top = int(round(cx - width / 2)), int(round(cy - height / 2))
            return box_mask((left, top, int(round(cx + width / 2)), int(round(cy + height / 2))), RESOLUTION)
        return ellipse_mask((cx, cy), width, height, RESOLUTION)
    if form == "lumpy":
        pixels = np.zeros((RESOLUTION, RESOLUTION), bool)
        for _ in range(int(rng.integers(3, 6))):
            offset = rng.uniform(-size / 3, size / 3, size=2)
            diameter = rng.uniform(0.4, 0.8) * size
            pixels |= ellipse_mask((cx + offset[0], cy + offset[1]), diameter, diameter, RESOLUTION)
        return pixels
    angle = rng.uniform(0, 2 * np.pi)
    bite = rng.uniform(0.5, 0.8) * size
    centre = (cx + np.cos(angle) * size / 2, cy + np.sin(angle) * size / 2)
    return shape_mask(shape.kind, shape.center, size, RESOLUTION) & ~ellipse_mask(centre, bite, bite, RESOLUTION)


def misdrawn_pairs(seed: int, step: int, count: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``count`` views of one shape in a varied region, each drawn right and drawn wrong (``misdrawn``) on the
    same background, in [-1, 1] with the masked-out part grey, and the shape's caption."""
    rng = np.random.default_rng([seed, step, 1])
    right, wrong, keeps, captions = [], [], [], []
    for _ in range(count):
        scene = random_scene(rng, RESOLUTION, num_shapes=1)
        shape = scene.shapes[0]
        pixels = misdrawn(rng, shape)
        keeps.append(varied_region(rng, shape_mask(shape.kind, shape.center, shape.size, RESOLUTION) | pixels))
        right.append(render(scene, RESOLUTION))
        bad = render(Scene(scene.background, scene.split, ()), RESOLUTION)
        bad[pixels] = PALETTE[shape.colour]
        wrong.append(bad)
        captions.append(f"a {shape.colour} {shape.kind}")
    keep = torch.from_numpy(np.stack(keeps))[:, None].float()
    return to_model_range(np.stack(right)) * keep, to_model_range(np.stack(wrong)) * keep, captions


def view_batch(
    seed: int,
    step: int,
    batch_size: int,
    regions: str = "square",
    captions: str = "last",
    round_trip: Callable[[torch.Tensor], torch.Tensor] | None = None,
    round_trip_share: float = 0.0,
) -> tuple[torch.Tensor, list[str]]:
    """Views in [-1, 1] with the masked-out part grey (0), half of them projectively warped; ``round_trip_share``
    of the images passed through ``round_trip`` before they are masked (drawn apart, so that without it the
    batches are the same)."""
    rng = np.random.default_rng([seed, step])
    views = [training_view(rng, regions, captions) for _ in range(batch_size)]
    images = to_model_range(np.stack([v[0] for v in views]))
    if round_trip is not None and round_trip_share > 0:
        passed = torch.from_numpy(np.random.default_rng([seed, step, 1]).random(batch_size) < round_trip_share)
        if passed.any():
            images[passed] = round_trip(images[passed]).clamp(-1, 1)
    keep = torch.from_numpy(np.stack([v[1] for v in views]))[:, None].float()
    images = images * keep
    warped = ProjectiveAugmentation()(images, 2, torch.Generator().manual_seed(seed * 7919 + step))[batch_size:]
    chosen = torch.from_numpy(rng.random(batch_size) < 0.5).view(-1, 1, 1, 1)
    return torch.where(chosen, warped, images), [v[2] for v in views]


def contrastive_loss(logits_per_image: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Cross-entropy both ways, with the target spread evenly over every matching caption."""
    same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.float32)
    target = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (
        torch.sum(-target * F.log_softmax(logits_per_image, dim=1), dim=1).mean()
        + torch.sum(-target * F.log_softmax(logits_per_image.t(), dim=1), dim=1).mean()
    )


def clip_output(
    model: CLIPModel,
    tokenizer: CLIPTokenizer,
    feature_extractor: CLIPImageProcessor,
    images: torch.Tensor,
    texts: list[str],
) -> Any:
    """CLIP's output for ``images`` (in [-1, 1]) against ``texts``, tokenised to the tokenizer's full length."""
    tokens = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
    return model(
        input_ids=tokens.input_ids,
        attention_mask=tokens.attention_mask,
        pixel_values=clip_pixel_values(images, feature_extractor),
    )


def misdrawn_loss(
    model: CLIPModel,
    tokenizer: CLIPTokenizer,
    feature_extractor: CLIPImageProcessor,
    pairs: tuple[torch.Tensor, torch.Tensor, list[str]],
    margin: float,
) -> torch.Tensor:
    """Hinge on each pair: the shape drawn right must match its caption by ``margin`` (in cosine) more than the
    same shape drawn wrong."""
    right, wrong, captions = pairs
    output = clip_output(model, tokenizer, feature_extractor, torch.cat([right, wrong]), captions)
    similarity = (output.image_embeds.view(2, len(captions), -1) * output.text_embeds).sum(-1)
    return F.relu(margin - (similarity[0] - similarity[1])).mean()


@torch.no_grad()
def zero_shot_accuracy(
    model: CLIPModel,
    tokenizer: CLIPTokenizer,
    feature_extractor: CLIPImageProcessor,
    count: int = 240,
    seed: int = 10**6,
) -> float:
    """Accuracy choosing "a {colour} {shape}" among all 24 for held-out single-shape scenes."""
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, RESOLUTION, num_shapes=1) for _ in range(count)]
    images = to_model_range(np.stack([render(s, RESOLUTION) for s in scenes]))
    output = clip_output(model, tokenizer, feature_extractor, images, list(SHAPE_PROMPTS))
    predicted = output.logits_per_image.argmax(dim=1)
    truth = torch.tensor([SHAPE_PROMPTS.index(f"a {s.shapes[0].colour} {s.shapes[0].kind}") for s in scenes])
    return float((predicted == truth).float().mean())


def train(
    out: Path,
    steps: int,
    batch_size: int,
    seed: int,
    lr: float,
    save_every: int,
    regions: str = "square",
    captions: str = "last",
    init: Path | None = None,
    misdrawn_weight: float = 0.0,
    vae_dir: Path | None = None,
    vae_share: float = 0.5,
) -> None:
    """A run in ``out``, resumed if it holds a state; a new one starts from ``init``'s weights (a ``clip_model``
    directory) when given, with a new optimiser, to fine-tune a model whose training state is not at hand.
    ``misdrawn_weight`` adds that times ``misdrawn_loss`` on a quarter batch of pairs, for a CLIP that ranks.
    ``vae_dir`` (an ``AutoencoderKL`` directory) passes ``vae_share`` of the views through its encoding and decoding."""
    if not misdrawn_weight >= 0:
        raise ValueError(f"misdrawn weight must be a number >= 0, got {misdrawn_weight}")
    if vae_dir is not None and not 0 < vae_share <= 1:
        raise ValueError(f"the VAE's share of the views must be in (0, 1], got {vae_share}")
    if misdrawn_weight > 0 and batch_size < 4:
        raise ValueError(f"misdrawn pairs are a quarter batch: the batch size must be at least 4, got {batch_size}")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer, feature_extractor = build_tokenizer(VOCABULARY), build_feature_extractor()
    model = build_clip(tokenizer)
    if init is not None:
        model.load_state_dict(CLIPModel.from_pretrained(init).state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    state_path = out / "state.pt"
    start = resume(state_path, model=model, optimizer=optimizer)
    log = ProgressLog(start)
    round_trip = None if vae_dir is None else partial(vae_round_trip, AutoencoderKL.from_pretrained(vae_dir).eval())
    for step in range(start, steps):
        images, texts = view_batch(seed, step, batch_size, regions, captions, round_trip, vae_share)
        output = clip_output(model, tokenizer, feature_extractor, images, texts)
        loss = contrastive_loss(output.logits_per_image, texts)
        if misdrawn_weight > 0:
            pairs = misdrawn_pairs(seed, step, batch_size // 4)
            loss = loss + misdrawn_weight * misdrawn_loss(model, tokenizer, feature_extractor, pairs, MISDRAWN_MARGIN)
        apply_gradients(model, optimizer, loss, learning_rate(step, steps, lr, warmup=200))
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        done = step + 1
        log.add(done, loss.detach())
        if done % save_every == 0 or done == steps:
            model.eval()
            accuracy = zero_shot_accuracy(model, tokenizer, feature_extractor)
            print(f"step {done} zero-shot accuracy {accuracy:.3f}", flush=True)
            model.train()
            save_state(state_path, done, model=model, optimizer=optimizer)
            model.save_pretrained(out / "clip_model")
            tokenizer.save_pretrained(out / "tokenizer")
            feature_extractor.save_pretrained(out / "feature_extractor")


def main() -> None:
    parser = training_parser(__doc__.splitlines()[0], steps=3000, batch_size=128, save_every=250)
    parser.add_argument("--regions", choices=REGION_KINDS, default="square", help="how box views' regions are drawn")
    parser.add_argument("--captions", choices=CAPTION_KINDS, default="last", help="what shape-box captions name")
    parser.add_argument("--init", type=Path, help="a clip_model directory whose weights a new run starts from")
    parser.add_argument(
        "--misdrawn-weight", type=float, default=0.0, help="weight of the hinge ranking shapes above misdrawn ones"
    )
    parser.add_argument(
        "--vae", type=Path, help="a VAE for a share of the views: a train_vae run, or a latent checkpoint, or its vae"
    )
    parser.add_argument("--vae-share", type=float, help="the share of the views --vae round-trips (default 0.5)")
    args = parse_training_arguments(parser)
    if args.vae_share is not None and args.vae is None:
        parser.error("--vae-share is the share of the views --vae passes through; give --vae too")
    vae_dir = None if args.vae is None else args.vae / "vae" if (args.vae / "vae").is_dir() else args.vae
    share = 0.5 if args.vae_share is None else args.vae_share
    run = (args.out, args.steps, args.batch_size, args.seed, args.lr, args.save_every, args.regions, args.captions)
    try:
        train(*run, args.init, args.misdrawn_weight, vae_dir, share)
    except ValueError as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
