"""The blended-edit command: outputs, the demo, and one-line errors with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from helpers import another_tiny_clip, tiny_latent_pipeline, tiny_pipeline

from blended_pipeline import SHAPES_CHECKPOINT, BlendedDiffusionPipeline, cli
from blended_pipeline.request import pipeline_defaults

FAST = ["--steps", "4", "--samples", "2", "--augmentations", "2"]


@pytest.fixture
def tiny_model(tmp_path):
    path = tmp_path / "model"
    tiny_pipeline().save_pretrained(path)
    return str(path)


@pytest.fixture
def files(tmp_path, image, mask):
    image.save(tmp_path / "in.png")
    mask.save(tmp_path / "mask.png")
    return tmp_path


def test_edit_writes_best_ranked_results_scores_and_grid(files, tiny_model, image, mask):
    out = files / "out.png"
    code = cli.main(
        [
            "--image",
            str(files / "in.png"),
            "--mask",
            str(files / "mask.png"),
            "--prompt",
            "a red ball",
            "--out",
            str(out),
            "--model",
            tiny_model,
            *FAST,
        ]
    )
    assert code == 0
    names = sorted(p.name for p in files.iterdir() if p.name.startswith("out"))
    assert names == ["out-1.png", "out-2.png", "out-grid.png", "out-scores.json", "out.png"]
    scores = json.loads((files / "out-scores.json").read_text())
    assert scores["prompt"] == "a red ball" and [r["rank"] for r in scores["results"]] == [1, 2]
    assert np.array_equal(np.asarray(PIL.Image.open(out)), np.asarray(PIL.Image.open(files / "out-1.png")))
    keep = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(PIL.Image.open(out))[keep], np.asarray(image)[keep])
    assert not list(files.glob(".*tmp"))


def test_demo_runs_offline_on_the_shipped_checkpoint(tmp_path, capsys):
    code = cli.main(["--demo", "--out", str(tmp_path / "demo"), *FAST])
    assert code == 0
    written = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"input.png", "mask.png", "result.png", "result-grid.png", "result-scores.json"} <= written
    scene = np.asarray(PIL.Image.open(tmp_path / "demo" / "input.png"))
    keep = np.asarray(PIL.Image.open(tmp_path / "demo" / "mask.png")) == 0
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "demo" / "result.png"))[keep], scene[keep])


def test_unknown_words_are_named_in_a_warning(files, capsys):
    cli.main(
        [
            "--image",
            str(files / "in.png"),
            "--mask",
            str(files / "mask.png"),
            "--prompt",
            "a zebra circle",
            "--out",
            str(files / "out.png"),
            "--model",
            SHAPES_CHECKPOINT,
            *FAST,
        ]
    )
    assert "does not know zebra" in capsys.readouterr().err


def error_cases(files, tiny_model):
    base = [
        "--image",
        str(files / "in.png"),
        "--mask",
        str(files / "mask.png"),
        "--prompt",
        "a red ball",
        "--model",
        tiny_model,
        *FAST,
    ]
    empty = files / "empty.png"
    PIL.Image.new("L", (40, 24), 0).save(empty)
    (files / "text.png").write_text("not an image")
    out = ["--out", str(files / "out.png")]
    return {
        "missing image file": ["--image", str(files / "nope.png"), *base[2:], *out],
        "not an image": ["--image", str(files / "text.png"), *base[2:], *out],
        "missing prompt": [*base[:4], *base[6:], *out],
        "empty mask": [*base[:2], "--mask", str(empty), *base[4:], *out],
        "bad strength": [*base, *out, "--strength", "0"],
        "bad samples": [*base, *out, "--samples", "0"],
        "out not png": [*base, "--out", str(files / "out.jpg")],
        "out dir missing": [*base, "--out", str(files / "no" / "out.png")],
        "model missing": [*base, *out, "--model", str(files / "no-model")],
        "guidance scale nan": [*base, *out, "--guidance-scale", "nan"],
        "negative background loss scale": [*base, *out, "--background-loss-scale", "-1"],
        "steps too few for strength": [*base, *out, "--steps", "2", "--strength", "0.4"],
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing image file",
        "not an image",
        "missing prompt",
        "empty mask",
        "bad strength",
        "bad samples",
        "out not png",
        "out dir missing",
        "model missing",
        "guidance scale nan",
        "negative background loss scale",
        "steps too few for strength",
    ],
)
def test_errors_print_one_line_exit_2_and_write_nothing(files, tiny_model, capsys, case):
    arguments = error_cases(files, tiny_model)[case]
    before = set(files.iterdir())
    assert cli.main(arguments) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("blended-edit: error:") and "\n" not in err
    assert set(files.iterdir()) == before


@pytest.mark.parametrize(("flag", "scheduler"), [("ddim", "DDIMScheduler"), ("ddpm", "DDPMScheduler")])
def test_scheduler_and_ranking_options(files, tiny_model, flag, scheduler):
    arguments = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    out = ["--out", str(files / "out.png"), "--model", tiny_model, *FAST]
    assert cli.main([*arguments, *out, "--scheduler", flag, "--rank-by", "masked"]) == 0
    record = json.loads((files / "out-scores.json").read_text())
    assert (record["scheduler"], record["rank_by"]) == (scheduler, "masked")
    whole = ["--out", str(files / "whole.png"), "--model", tiny_model, *FAST]
    assert cli.main([*arguments, *whole, "--scheduler", flag, "--rank-by", "whole"]) == 0
    by_whole = json.loads((files / "whole-scores.json").read_text())
    assert [r["score"] for r in by_whole["results"]] != [r["score"] for r in record["results"]]
    pictures = {
        name: sorted(np.asarray(PIL.Image.open(p)).tobytes() for p in files.glob(f"{name}-[0-9].png"))
        for name in ("out", "whole")
    }
    assert pictures["out"] == pictures["whole"]  # the same results, scored and ordered by what --rank-by names
    with pytest.raises(SystemExit) as refused:
        cli.main([*arguments, *out, "--rank-by", "crop"])
    assert refused.value.code == 2


def test_a_ranking_clip_ranks_the_results_and_is_recorded(files, tiny_model, monkeypatch):
    loaded = {}
    original = cli.load_pipeline

    def recording_load_pipeline(*arguments):
        loaded["pipe"] = original(*arguments)
        return loaded["pipe"]

    monkeypatch.setattr(cli, "load_pipeline", recording_load_pipeline)
    ranking_clip = str(files / "ranking-clip")
    another_tiny_clip().save_pretrained(ranking_clip)
    arguments = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    model = ["--model", tiny_model, *FAST]
    assert cli.main([*arguments, "--out", str(files / "own.png"), *model]) == 0
    assert cli.main([*arguments, "--out", str(files / "ranked.png"), *model, "--ranking-clip", ranking_clip]) == 0
    ranker = loaded["pipe"].ranking_clip_model
    expected = BlendedDiffusionPipeline.from_pretrained(tiny_model).clip_model  # not the guiding CLIP's weights
    assert ranker is not None and not torch.equal(ranker.text_projection.weight, expected.text_projection.weight)
    own, ranked = (json.loads((files / f"{name}-scores.json").read_text()) for name in ("own", "ranked"))
    assert ranked["ranking_clip"] == ranking_clip and "ranking_clip" not in own
    scores = [sorted(r["score"] for r in record["results"]) for record in (own, ranked)]
    assert not np.allclose(*scores)


def test_a_ranking_clip_of_another_image_size_is_refused_in_one_line(files, tiny_model, capsys):
    arguments = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    other = str(files / "big-clip")
    another_tiny_clip(image_size=32).save_pretrained(other)
    before = set(files.iterdir())
    assert (
        cli.main([*arguments, "--out", str(files / "o.png"), "--model", tiny_model, "--ranking-clip", other, "--quiet"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"blended-edit: error: --ranking-clip {other}: ") and "image_size is 32" in err
    assert "\n" not in err and set(files.iterdir()) == before


def test_default_strength_depends_on_the_application_and_the_checkpoint():
    parser = cli.build_parser()
    base = ["--image", "in.png", "--prompt", "a red ball", "--out", "out.png"]
    checkpoint = BlendedDiffusionPipeline(
        **{**tiny_pipeline().components, "default_strength": 0.8, "scribble_strength": 0.6}
    ).config

    def strength(*options: str) -> float:
        request = cli.edit_request(parser.parse_args([*base, *options]))
        return request.pipeline_arguments("pixel", checkpoint)["strength"]

    assert strength("--mask", "m.png") == 0.8
    assert strength("--mask", "m.png", "--invert-mask") == 1.0
    assert strength("--scribble", "s.png") == 0.6
    assert strength("--scribble", "s.png", "--strength", "0.3") == 0.3


def test_errors_name_the_flag_not_the_pipeline_argument(files, tiny_model, capsys):
    arguments = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    assert cli.main([*arguments, "--out", str(files / "out.png"), "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "--steps must be an integer >= 1" in err and "num_inference_steps" not in err


def test_algorithm_1_offline_with_the_background_loss_recorded(files, tiny_model):
    arguments = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    out = ["--out", str(files / "out.png"), "--model", tiny_model, *FAST]
    algorithm_1 = ["--no-blend", "--background-loss-scale", "100", "--background-loss", "mse"]
    assert cli.main([*arguments, *out, *algorithm_1]) == 0
    record = json.loads((files / "out-scores.json").read_text())
    assert record["blend"] is False and record["background_loss"] == "mse"
    assert record["background_loss_scale"] == 100.0 and record["num_inference_steps"] == 4


@pytest.fixture
def tiny_latent_model(tmp_path):
    from helpers import tiny_latent_pipeline

    path = tmp_path / "latent-model"
    tiny_latent_pipeline().save_pretrained(path)
    return str(path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--scheduler", "euler"], "--scheduler euler works with latent models only"),
        (["--scheduler", "dpm++"], "--scheduler dpm++ works with latent models only"),
        (["--steps", "100000"], "--steps 100000 is more than the 100 timesteps"),
        (
            ["--scheduler", "ddim", "--restart-at", "0.3"],
            "--restart-at 0.3 restarts results from copies of the best, and --scheduler ddim at --eta 0 draws no noise",
        ),
    ],
)
def test_what_the_model_cannot_run_is_refused_before_it_loads(files, tiny_model, capsys, monkeypatch, options, message):
    def no_loading(*_):
        raise AssertionError("the model loaded")

    monkeypatch.setattr(cli, "load_pipeline", no_loading)
    arguments = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    before = set(files.iterdir())
    assert cli.main([*arguments, "--model", tiny_model, "--out", str(files / "o.png"), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("blended-edit: error: ") and message in err and err.count("\n") == 1
    assert set(files.iterdir()) == before


def test_a_broken_model_index_is_named(files, tiny_model, capsys):
    index = files / "model" / "model_index.json"
    index.write_text(index.read_text()[:60])
    arguments = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    assert cli.main([*arguments, "--model", tiny_model, "--out", str(files / "o.png")]) == 2
    err = capsys.readouterr().err
    assert f"{index} is not valid JSON" in err and err.count("\n") == 1


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "flux"])
def test_a_plain_diffusers_directory_of_each_family_edits_with_results_not_ranked(files, image, mask, family):
    from helpers import save_as_diffusers

    save_as_diffusers(family, files / family)
    out = files / "result.png"
    arguments = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    assert (
        cli.main([*arguments, "--model", str(files / family), "--samples", "2", "--steps", "4", "--out", str(out)]) == 0
    )
    record = json.loads((files / "result-scores.json").read_text())
    assert [r["score"] for r in record["results"]] == ["not ranked", "not ranked"]
    keep = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(PIL.Image.open(out))[keep], np.asarray(image)[keep])


def test_model_index_picks_the_latent_pipeline(files, tiny_latent_model, image, mask):
    out = files / "latent.png"
    arguments = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    code = cli.main(
        [
            *arguments,
            "--out",
            str(out),
            "--model",
            tiny_latent_model,
            "--steps",
            "4",
            "--samples",
            "2",
            "--guidance-scale",
            "5",
            "--negative-prompt",
            "a blue ball",
            "--scheduler",
            "euler",
            "--rank-border-weight",
            "0.3",
            "--quiet",
        ]
    )
    assert code == 0
    record = json.loads((files / "latent-scores.json").read_text())
    assert (record["guidance_scale"], record["negative_prompt"], record["scheduler"], record["rank_border_weight"]) == (
        5.0,
        "a blue ball",
        "EulerDiscreteScheduler",
        0.3,
    )
    assert "clip_guidance_scale" not in record and record["latent_mask"] == "conservative"
    keep = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(PIL.Image.open(out))[keep], np.asarray(image)[keep])


@pytest.mark.parametrize(
    "model, option, message",
    [
        ("latent", ["--augmentations", "4"], "--augmentations applies to pixel models only"),
        ("pixel", ["--reconstruction", "decoder"], "--reconstruction applies to latent models only"),
        ("latent", ["--fast"], "--fast applies to pixel models only"),
        ("latent", ["--guidance-every", "2"], "--guidance-every applies to pixel models only"),
        ("pixel", ["--negative-prompt", "blue"], "--negative-prompt applies to latent models only"),
    ],
)
def test_options_of_the_other_kind_of_model_are_refused(
    files, tiny_model, tiny_latent_model, capsys, model, option, message
):
    path = tiny_latent_model if model == "latent" else tiny_model
    arguments = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    assert cli.main([*arguments, "--out", str(files / "o.png"), "--model", path, *option]) == 2
    assert message in capsys.readouterr().err


def test_latent_demo_runs_offline_on_the_shipped_latent_checkpoint(tmp_path):
    code = cli.main(
        ["--demo", "--latent", "--out", str(tmp_path / "demo"), "--steps", "8", "--samples", "2", "--quiet"]
    )
    assert code == 0
    record = json.loads((tmp_path / "demo" / "result-scores.json").read_text())
    assert record["model"].endswith("latent_checkpoint") and record["scheduler"] == "DDIMScheduler"
    assert len(record["results"]) == 2 and record["strength"] == 1.0
    scene = np.asarray(PIL.Image.open(tmp_path / "demo" / "input.png"))
    keep = np.asarray(PIL.Image.open(tmp_path / "demo" / "mask.png")) == 0
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "demo" / "result.png"))[keep], scene[keep])


def test_latent_with_another_model_is_refused(capsys):
    assert cli.main(["--demo", "--latent", "--model", "elsewhere", "--out", "demo"]) == 2
    assert "--latent picks the shipped shapes latent model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, end",
    [([], 1.0), (["--fast"], 0.7), (["--guidance-end", "0.4"], 0.4), (["--fast", "--guidance-end", "1"], 1.0)],
)
def test_fast_preset_guides_the_first_70_percent_of_the_steps_unless_told_otherwise(options, end):
    from blended_pipeline import SHAPES_CHECKPOINT, BlendedDiffusionPipeline

    pipe = BlendedDiffusionPipeline.from_pretrained(SHAPES_CHECKPOINT)
    request = cli.edit_request(cli.build_parser().parse_args(["--demo", "--out", "x", *options]))
    settings = request.planned_settings(pipe)
    assert settings["guidance_end"] == end and settings["guidance_every"] == 1
    assert settings["num_inference_steps"] == 50  # the shapes checkpoint's own default_num_inference_steps


def test_guidance_options_are_checked_before_loading(capsys):
    assert cli.main(["--demo", "--out", "x", "--guidance-end", "1.5"]) == 2
    assert "--guidance-end must be in (0, 1]" in capsys.readouterr().err
    assert cli.main(["--demo", "--out", "x", "--guidance-every", "0"]) == 2
    assert "--guidance-every must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, name, given, bad, message",
    [
        ("--rank-border-weight", "rank_border_weight", 0.7, "-1", "--rank-border-weight must be >= 0"),
        ("--restart-at", "restart_at", 0.0, "1", "--restart-at must be in [0, 1)"),
    ],
)
def test_checkpoint_defaults_apply_where_not_given_and_are_checked(capsys, option, name, given, bad, message):
    from blended_pipeline import SHAPES_CHECKPOINT, BlendedDiffusionPipeline

    pipe = BlendedDiffusionPipeline.from_pretrained(SHAPES_CHECKPOINT)
    parser = cli.build_parser()
    default = cli.edit_request(parser.parse_args(["--demo", "--out", "x"])).planned_settings(pipe)
    assert default[name] == pipe.config[f"default_{name}"] != given
    chosen = cli.edit_request(parser.parse_args(["--demo", "--out", "x", option, str(given)]))
    assert chosen.planned_settings(pipe)[name] == given
    assert cli.main(["--demo", "--out", "x", option, bad]) == 2
    assert message in capsys.readouterr().err


def test_planned_and_default_settings_let_a_checkpoints_ranking_give_way_where_nothing_is_ranked():
    """The plan line and the defaults the page and benchmarks show are what the pipeline will run: a checkpoint's
    candidates, rivals and vote apply only where there are CLIP parts to rank with; one asked for is kept, for the
    pipeline to refuse."""
    defaults = dict(default_candidates_per_result=3, default_rank_rivals="ball,box", default_rank_denoiser_weight=1.0)
    names = ("candidates_per_result", "rank_rivals", "rank_denoiser_weight")
    parser = cli.build_parser()
    request = cli.edit_request(parser.parse_args(["--demo", "--out", "x"]))
    ranked, unranked = tiny_latent_pipeline(**defaults), tiny_latent_pipeline(with_clip=False, **defaults)
    assert tuple(request.planned_settings(ranked)[name] for name in names) == (3, "ball,box", 1.0)
    assert tuple(request.planned_settings(unranked)[name] for name in names) == (1, "", 0.0)
    assert tuple(pipeline_defaults(unranked)[name] for name in names) == (1, "", 0.0)
    assert tuple(pipeline_defaults(ranked)[name] for name in names) == (3, "ball,box", 1.0)
    asked = cli.edit_request(parser.parse_args(["--demo", "--out", "x", "--candidates", "2"]))
    assert asked.planned_settings(unranked)["candidates_per_result"] == 2


def test_demo_record_shows_the_checkpoints_steps_and_the_fast_preset(tmp_path):
    assert cli.main(["--demo", "--out", str(tmp_path / "demo"), "--fast", "--samples", "1", "--quiet"]) == 0
    record = json.loads((tmp_path / "demo" / "result-scores.json").read_text())
    assert record["num_inference_steps"] == 50 and record["guidance_end"] == 0.7
