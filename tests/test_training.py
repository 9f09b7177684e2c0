"""The shapes training scripts are reproducible and resume exactly where they stopped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel
from safetensors.torch import load_file
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

from blended_pipeline import SHAPES_CHECKPOINT, SHAPES_LATENT_CHECKPOINT, BlendedLatentDiffusionPipeline
from blended_pipeline.output import current_umask
from blended_pipeline.shapes import train_clip, train_latent_unet, train_unet
from blended_pipeline.shapes.export import (
    SHAPES_RANK_BORDER_WEIGHT,
    SHAPES_RESTART_AT,
    SHAPES_SCRIBBLE_STRENGTH,
    SHAPES_STRENGTH,
    export,
    export_latent,
)
from blended_pipeline.shapes.train_unet import RESOLUTION
from blended_pipeline.shapes.training_utils import to_model_range, vae_round_trip
from blended_pipeline.shapes.world import Scene, Shape, box_mask, random_scene, render, shape_mask


@pytest.mark.parametrize("module", [train_unet, train_clip])
def test_stopped_and_resumed_run_equals_an_uninterrupted_one(module, tmp_path):
    module.train(tmp_path / "straight", steps=3, batch_size=4, seed=0, lr=1e-3, save_every=3)
    module.train(tmp_path / "resumed", steps=2, batch_size=4, seed=0, lr=1e-3, save_every=2)
    module.train(tmp_path / "resumed", steps=3, batch_size=4, seed=0, lr=1e-3, save_every=3)
    straight = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "state.pt", weights_only=True)
    assert straight["step"] == resumed["step"] == 3
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    exported = "unet" if module is train_unet else "clip_model"
    assert (tmp_path / "straight" / exported / "config.json").exists()


def test_varied_regions_hold_their_shape_and_take_every_form():
    rng = np.random.default_rng(0)
    forms, areas = set(), []
    for _ in range(300):
        scene = random_scene(rng, RESOLUTION, num_shapes=1)
        shape = scene.shapes[0]
        pixels = shape_mask(shape.kind, shape.center, shape.size, RESOLUTION)
        region = train_clip.varied_region(rng, pixels)
        assert not (pixels & ~region).any()
        ys, xs = np.nonzero(region)
        height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        filled = region.sum() / (height * width)
        forms.add(
            (
                "wide" if width > 1.25 * height else "tall" if height > 1.25 * width else "even",
                "box" if filled == 1 else "round",
            )
        )
        areas.append(region.mean())
    assert {("wide", "box"), ("tall", "box"), ("even", "box"), ("even", "round")} <= forms
    assert min(areas) < 0.2 and max(areas) > 0.4


def test_square_regions_draw_the_views_the_shipped_clip_was_trained_on():
    square, varied = train_clip.view_batch(0, 5, 32), train_clip.view_batch(0, 5, 32, "varied")
    assert torch.equal(square[0], train_clip.view_batch(0, 5, 32, "square")[0])
    assert not torch.equal(square[0], varied[0])
    # Pinned from the code that trained the first 7,000 steps (commit bfbf1db): a refactor must draw the same views.
    assert float(square[0].double().abs().sum()) == pytest.approx(30379.0186, rel=1e-5)
    assert square[1][:6] == [
        "a white circle",
        "a green background",
        "a yellow triangle on a white background",
        "a orange background",
        "a blue square",
        "a blue background",
    ]


def test_visible_captions_name_every_shape_showing_in_the_region():
    lower = Shape("circle", "red", (10.0, 10.0), 12.0)
    upper = Shape("square", "blue", (20.0, 20.0), 12.0)
    scene = Scene(("white",), float(RESOLUTION), (lower, upper))
    around_upper = box_mask((13, 13, 27, 27), RESOLUTION)  # takes in the circle's lower right edge
    assert train_clip.objects_in(scene, around_upper) == "a red circle and a blue square"
    assert train_clip.objects_in(scene, box_mask((18, 18, 27, 27), RESOLUTION)) == "a blue square"
    hidden = Scene(("white",), float(RESOLUTION), (Shape("circle", "red", (20.0, 20.0), 6.0), upper))
    assert train_clip.objects_in(hidden, around_upper) == "a blue square"  # the circle lies under the square
    last, visible = train_clip.view_batch(0, 5, 128, "varied"), train_clip.view_batch(0, 5, 128, "varied", "visible")
    assert torch.equal(last[0], visible[0])  # the same views, only captions differ
    changed = [(a, b) for a, b in zip(last[1], visible[1], strict=True) if a != b]
    assert changed and all(b.endswith(a) and " and " in b for a, b in changed)


def test_a_share_of_the_views_pass_through_the_round_trip_before_they_are_masked():
    plain = train_clip.view_batch(0, 5, 64, "varied")
    assert torch.equal(train_clip.view_batch(0, 5, 64, "varied", round_trip=lambda x: -x)[0], plain[0])  # share 0
    identity = train_clip.view_batch(0, 5, 64, "varied", round_trip=lambda x: x, round_trip_share=0.5)[0]
    assert torch.equal(identity, plain[0])  # the share is drawn apart: the views themselves are the same
    greyed = train_clip.view_batch(0, 5, 64, "varied", round_trip=torch.zeros_like, round_trip_share=0.5)
    assert greyed[1] == plain[1]
    passed = torch.from_numpy(np.random.default_rng([0, 5, 1]).random(64) < 0.5)
    assert 16 < int(passed.sum()) < 48
    assert torch.equal((greyed[0] != plain[0]).flatten(1).any(dim=1), passed)
    assert (greyed[0][passed] == 0).all() and (greyed[0][~passed] == plain[0][~passed]).all()
    lifted = train_clip.view_batch(0, 5, 64, "varied", round_trip=lambda x: torch.full_like(x, 0.5), round_trip_share=1)
    surround = plain[0] == 0  # grey: masked out (a palette colour is never exactly mid-grey)
    assert (lifted[0][surround] == 0).all()  # masked after the round trip, so the surround stays grey
    assert (lifted[0][~surround] != 0).any()


def test_the_vae_round_trip_keeps_a_scene_close_and_trains_the_clip_on_it(tmp_path):
    vae = Path(SHAPES_LATENT_CHECKPOINT) / "vae"
    rng = np.random.default_rng(0)
    scenes = to_model_range(np.stack([render(random_scene(rng, RESOLUTION), RESOLUTION) for _ in range(8)]))
    passed = vae_round_trip(AutoencoderKL.from_pretrained(vae).eval(), scenes)
    assert passed.shape == scenes.shape and not torch.equal(passed, scenes)
    assert float((passed - scenes).abs().mean()) < 0.1  # blurred at the edges, the same scene
    run = {"steps": 1, "batch_size": 8, "seed": 0, "lr": 1e-3, "save_every": 1}
    train_clip.train(tmp_path / "plain", **run)
    train_clip.train(tmp_path / "through", vae_dir=vae, vae_share=1.0, **run)
    plain = CLIPModel.from_pretrained(tmp_path / "plain" / "clip_model").state_dict()
    through = CLIPModel.from_pretrained(tmp_path / "through" / "clip_model").state_dict()
    assert any(not torch.equal(value, through[name]) for name, value in plain.items())
    for share in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"share of the views must be in \(0, 1\]"):
            train_clip.train(tmp_path / "refused", vae_dir=vae, vae_share=share, **run)
    assert not (tmp_path / "refused").exists()


def test_misdrawn_pairs_differ_only_where_the_shape_is_drawn_and_name_it():
    right, wrong, captions = train_clip.misdrawn_pairs(0, 3, 48)
    assert right.shape == wrong.shape == (48, 3, RESOLUTION, RESOLUTION) and len(captions) == 48
    changed = (right != wrong).any(dim=1)
    assert changed.flatten(1).any(dim=1).all()  # every pair differs somewhere
    rng = np.random.default_rng([0, 3, 1])  # misdrawn_pairs' own draws, replayed
    forms = set()
    for index, caption in enumerate(captions):
        scene = random_scene(rng, RESOLUTION, num_shapes=1)
        shape = scene.shapes[0]
        assert caption == f"a {shape.colour} {shape.kind}"
        drawn = shape_mask(shape.kind, shape.center, shape.size, RESOLUTION)
        pixels = train_clip.misdrawn(rng, shape)
        train_clip.varied_region(rng, drawn | pixels)
        assert not (changed[index].numpy() & ~(drawn | pixels)).any()  # the background is the same in both
        forms.add("bitten" if not (pixels & ~drawn).any() else "grown")
    assert forms == {"bitten", "grown"}


def test_the_misdrawn_hinge_trains_the_clip_and_refuses_a_negative_weight(tmp_path):
    run = {"steps": 1, "batch_size": 8, "seed": 0, "lr": 1e-3, "save_every": 1}
    train_clip.train(tmp_path / "plain", **run)
    train_clip.train(tmp_path / "hinged", misdrawn_weight=1.0, **run)
    plain = CLIPModel.from_pretrained(tmp_path / "plain" / "clip_model").state_dict()
    hinged = CLIPModel.from_pretrained(tmp_path / "hinged" / "clip_model").state_dict()
    assert any(not torch.equal(value, hinged[name]) for name, value in plain.items())
    for weight, size, message in (
        (-1.0, 8, "must be a number >= 0"),
        (float("nan"), 8, "must be a number >= 0"),
        (1.0, 3, "at least 4, got 3"),
    ):
        with pytest.raises(ValueError, match=message):
            train_clip.train(tmp_path / "refused", **{**run, "batch_size": size}, misdrawn_weight=weight)
    assert not (tmp_path / "refused").exists()


def test_the_misdrawn_hinge_is_the_margin_for_identical_drawings_and_favours_the_right_one():
    checkpoint = Path(SHAPES_CHECKPOINT)
    model = CLIPModel.from_pretrained(checkpoint / "clip_model").eval()
    tokenizer = CLIPTokenizer.from_pretrained(checkpoint / "tokenizer")
    features = CLIPImageProcessor.from_pretrained(checkpoint / "feature_extractor")
    right, wrong, captions = train_clip.misdrawn_pairs(0, 0, 32)
    with torch.no_grad():
        same = train_clip.misdrawn_loss(model, tokenizer, features, (right, right, captions), 0.1)
        ordered = train_clip.misdrawn_loss(model, tokenizer, features, (right, wrong, captions), 0.1)
        swapped = train_clip.misdrawn_loss(model, tokenizer, features, (wrong, right, captions), 0.1)
    assert float(same) == pytest.approx(0.1, abs=1e-5)
    assert float(ordered) < 0.1 < float(swapped)  # the trained CLIP already prefers most right drawings


@pytest.mark.parametrize(
    ("module", "exported", "model_class"), [(train_unet, "unet", UNet2DModel), (train_clip, "clip_model", CLIPModel)]
)
def test_a_new_run_can_start_from_a_models_weights(module, exported, model_class, tmp_path):
    module.train(tmp_path / "first", steps=1, batch_size=4, seed=0, lr=1e-3, save_every=1)
    first = model_class.from_pretrained(tmp_path / "first" / exported)
    module.train(
        tmp_path / "tuned", steps=1, batch_size=4, seed=1, lr=0.0, save_every=1, init=tmp_path / "first" / exported
    )
    tuned = model_class.from_pretrained(tmp_path / "tuned" / exported)
    for name, value in first.state_dict().items():  # a learning rate of 0 leaves the starting weights
        assert torch.equal(value, tuned.state_dict()[name]), name


def test_unet_batches_rendered_by_a_worker_give_the_same_weights(tmp_path):
    train_unet.train(tmp_path / "inline", steps=2, batch_size=4, seed=0, lr=1e-3, save_every=2)
    train_unet.train(tmp_path / "worker", steps=2, batch_size=4, seed=0, lr=1e-3, save_every=2, workers=1)
    inline = torch.load(tmp_path / "inline" / "state.pt", weights_only=True)
    worker = torch.load(tmp_path / "worker" / "state.pt", weights_only=True)
    for name, value in inline["model"].items():
        assert torch.equal(value, worker["model"][name]), name


def test_unet_run_saves_and_stops_at_its_time_limit(tmp_path):
    train_unet.train(tmp_path, steps=50, batch_size=4, seed=0, lr=1e-3, save_every=50, time_limit_minutes=1e-9)
    assert torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 1
    assert (tmp_path / "unet" / "config.json").exists()


def test_export_rebuilds_the_models_from_states_alone(tmp_path):
    import shutil

    from blended_pipeline import BlendedDiffusionPipeline

    train_unet.train(tmp_path / "unet", steps=1, batch_size=2, seed=0, lr=1e-3, save_every=1)
    train_clip.train(tmp_path / "clip", steps=1, batch_size=4, seed=0, lr=1e-3, save_every=1)
    export(tmp_path / "unet", tmp_path / "clip", tmp_path / "from_models")
    assert (tmp_path / "from_models").stat().st_mode & 0o777 == 0o777 & ~current_umask()  # not mkdtemp's 0o700
    shutil.rmtree(tmp_path / "unet" / "unet")
    shutil.rmtree(tmp_path / "clip" / "clip_model")
    export(tmp_path / "unet", tmp_path / "clip", tmp_path / "from_states")
    first, second = (BlendedDiffusionPipeline.from_pretrained(tmp_path / n) for n in ("from_models", "from_states"))
    for a, b in ((first.unet, second.unet), (first.clip_model, second.clip_model)):
        for (name, value), other in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(value, other), name
    for pipe in (first, second):
        assert (pipe.config.default_strength, pipe.config.scribble_strength) == (
            SHAPES_STRENGTH,
            SHAPES_SCRIBBLE_STRENGTH,
        )
        assert pipe.config.default_rank_border_weight == SHAPES_RANK_BORDER_WEIGHT
        assert pipe.config.default_restart_at == SHAPES_RESTART_AT


def test_the_shipped_checkpoint_carries_the_shapes_strengths():
    from blended_pipeline import BlendedDiffusionPipeline

    config = BlendedDiffusionPipeline.load_config(SHAPES_CHECKPOINT)
    assert (config["default_strength"], config["scribble_strength"]) == (SHAPES_STRENGTH, SHAPES_SCRIBBLE_STRENGTH)
    assert config["default_rank_border_weight"] == SHAPES_RANK_BORDER_WEIGHT
    assert config["default_restart_at"] == SHAPES_RESTART_AT


def test_latent_run_resumes_exactly_and_exports_its_unet_in_half_precision_if_asked(tmp_path):
    run = {"vae_dir": Path(SHAPES_LATENT_CHECKPOINT) / "vae", "batch_size": 2, "seed": 0, "lr": 1e-3}
    train_latent_unet.train(tmp_path / "straight", steps=3, save_every=3, channels=(16, 32), **run)
    train_latent_unet.train(tmp_path / "resumed", steps=2, save_every=2, channels=(16, 32), **run)
    train_latent_unet.train(tmp_path / "resumed", steps=3, save_every=3, channels=(16, 32), **run)
    straight = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "state.pt", weights_only=True)
    assert straight["step"] == resumed["step"] == 3
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    with pytest.raises(ValueError, match="resume it with --channels 16 32"):
        train_latent_unet.train(tmp_path / "resumed", steps=4, save_every=4, channels=(32, 64), **run)

    export_latent(tmp_path / "straight", tmp_path / "checkpoint", unet_dtype=torch.float16)
    stored = load_file(tmp_path / "checkpoint" / "unet" / "diffusion_pytorch_model.safetensors")
    assert {value.dtype for value in stored.values()} == {torch.float16}
    unet = BlendedLatentDiffusionPipeline.from_pretrained(tmp_path / "checkpoint").unet
    assert unet.dtype == torch.float32 and tuple(unet.config.block_out_channels) == (16, 32)
    trained = UNet2DConditionModel.from_pretrained(tmp_path / "straight" / "unet").state_dict()
    for name, value in unet.state_dict().items():
        assert torch.equal(value, trained[name].half().float()), name


def test_one_shape_captions_name_a_shape_of_their_scene_and_leave_the_scenes_alone():
    images, _ = train_latent_unet.caption_batch(3, 5, 64)
    same_images, captions = train_latent_unet.caption_batch(3, 5, 64, one_shape=0.5)
    assert torch.equal(images, same_images)
    rng = np.random.default_rng([3, 5])
    scenes = [random_scene(rng, RESOLUTION) for _ in range(64)]
    singles = 0
    for scene, caption in zip(scenes, captions, strict=True):
        names = [f"a {shape.colour} {shape.kind}" for shape in scene.shapes]
        # a share of 0.5 leaves no whole captions: each is empty, all the shapes, or one of them
        assert caption in {"", " and ".join(names), *names}
        singles += len(names) == 2 and caption in names
    assert singles > 0  # a single shape named where the scene holds two


def test_a_latent_run_resumes_only_with_its_own_captions(tmp_path):
    run = {"vae_dir": Path(SHAPES_LATENT_CHECKPOINT) / "vae", "batch_size": 2, "seed": 0, "lr": 1e-3}
    train_latent_unet.train(tmp_path, steps=1, save_every=1, channels=(16, 32), one_shape_captions=0.3, **run)
    with pytest.raises(ValueError, match="resume it with --one-shape-captions 0.3"):
        train_latent_unet.train(tmp_path, steps=2, save_every=2, channels=(16, 32), **run)
    with pytest.raises(ValueError, match=r"one-shape captions must be a share in \[0, 0.5\], got 0.6"):
        train_latent_unet.train(tmp_path / "other", steps=1, save_every=1, one_shape_captions=0.6, **run)
    assert not (tmp_path / "other").exists()
    train_latent_unet.train(tmp_path, steps=2, save_every=2, channels=(16, 32), one_shape_captions=0.3, **run)
    assert torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 2


def test_the_shipped_latent_checkpoint_stays_under_15_mb():
    files = [path for path in Path(SHAPES_LATENT_CHECKPOINT).rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) < 15_000_000


def test_a_latent_run_may_start_from_a_trained_unet_on_shapes_of_other_sizes(tmp_path):
    run = {"vae_dir": Path(SHAPES_LATENT_CHECKPOINT) / "vae", "batch_size": 2, "seed": 0, "lr": 1e-3}
    train_latent_unet.train(tmp_path / "first", steps=2, save_every=2, channels=(16, 32), **{**run, "seed": 1})
    init = UNet2DConditionModel.from_pretrained(tmp_path / "first" / "unet").state_dict()
    sizes = {"channels": (16, 32), "size_range": (0.2, 0.25), **run}
    train_latent_unet.train(tmp_path / "tuned", steps=1, save_every=1, init=tmp_path / "first" / "unet", **sizes)
    train_latent_unet.train(tmp_path / "fresh", steps=1, save_every=1, **sizes)
    tuned = torch.load(tmp_path / "tuned" / "state.pt", weights_only=True)["model"]
    fresh = torch.load(tmp_path / "fresh" / "state.pt", weights_only=True)["model"]
    gap = {name: (tuned[name] - value).abs().max() for name, value in init.items()}
    assert max(gap.values()) < 1e-3 < max((fresh[name] - value).abs().max() for name, value in init.items())
    recipe = json.loads((tmp_path / "tuned" / "captions.json").read_text())
    assert recipe["init"] == str(tmp_path / "first" / "unet") and recipe["size_range"] == [0.2, 0.25]
    with pytest.raises(ValueError, match="start from it with --channels 16 32"):
        train_latent_unet.train(tmp_path / "wider", steps=1, save_every=1, init=tmp_path / "first" / "unet", **run)
    assert not (tmp_path / "wider").exists()
    with pytest.raises(ValueError, match="resume it with --size-range 0.2 0.25"):
        train_latent_unet.train(tmp_path / "tuned", steps=2, save_every=2, channels=(16, 32), **run)
    with pytest.raises(ValueError, match=r"0 < LOW <= HIGH <= 1, got 0.5 0.3"):
        train_latent_unet.train(tmp_path / "other", steps=1, save_every=1, size_range=(0.5, 0.3), **run)
    assert not (tmp_path / "other").exists()
    rng = np.random.default_rng([3, 5])
    scenes = [random_scene(rng, RESOLUTION, size_range=(0.2, 0.25)) for _ in range(16)]
    assert all(0.2 * RESOLUTION <= shape.size <= 0.25 * RESOLUTION for scene in scenes for shape in scene.shapes)
    images, _ = train_latent_unet.caption_batch(3, 5, 16, size_range=(0.2, 0.25))
    assert torch.equal(images, to_model_range(np.stack([render(scene, RESOLUTION) for scene in scenes])))
