"""The settings table holds the front ends and the pipelines together: every setting reaches each place that
should have it, with the table's default and checks."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from blended_pipeline import BlendedDiffusionPipeline, BlendedLatentDiffusionPipeline, batch, cli, manifest, ui
from blended_pipeline.request import EditRequest
from blended_pipeline.settings import (
    BY_NAME,
    SETTINGS,
    EditSettings,
    UsageError,
    idle_ranking_defaults,
    idle_rankings,
    idle_rankings_asked,
    resolve_settings,
)

PIPELINES = {"pixel": BlendedDiffusionPipeline, "latent": BlendedLatentDiffusionPipeline}
PAGE_PARAMETERS = {"samples": "samples", "steps": "steps", "strength": "strength", "scheduler": "scheduler"}


def options(parser) -> dict[str, str]:
    return {action.option_strings[0]: action.dest for action in parser._actions if action.option_strings}


@pytest.mark.parametrize("kind", ["pixel", "latent"])
def test_each_pipeline_takes_its_settings_with_the_tables_defaults(kind):
    parameters = inspect.signature(PIPELINES[kind].__call__).parameters
    for setting in SETTINGS:
        argument = setting.argument_for(kind)
        if kind in setting.pipelines and setting.call:
            assert argument in parameters, f"{kind} pipeline lacks {argument}"
            default = parameters[argument].default
            # None: resolved from the checkpoint, or the pipeline's own (mixed precision)
            assert default is None or default == setting.default_for(kind), argument
        elif not setting.pipelines or not setting.call:
            assert setting.name not in parameters, f"{setting.name} is not the {kind} pipeline's"
    init = inspect.signature(PIPELINES[kind].__init__).parameters
    for setting in SETTINGS:
        if setting.checkpoint and kind in setting.pipelines:
            assert init[setting.checkpoint].default == setting.default_for(kind)


@pytest.mark.parametrize("parser", [cli.build_parser(), batch.build_parser()], ids=["blended-edit", "batch"])
def test_every_setting_with_a_flag_is_an_option_of_both_commands(parser):
    offered = options(parser)
    for setting in SETTINGS:
        if setting.flag:
            assert offered.get(setting.flag) == setting.name


def test_the_request_manifest_and_page_take_the_tables_settings():
    assert {f.name for f in dataclasses.fields(EditSettings)} == {s.name for s in SETTINGS if s.flag}
    per_edit = {s.name for s in SETTINGS if s.flag and s.per_edit}
    assert {s.name for s in manifest.SETTING_FIELDS.values()} == per_edit
    page = inspect.signature(ui.edit_image).parameters
    for setting in SETTINGS:
        if setting.page:
            assert setting.page.replace(" ", "_") in page, setting.page
            assert ui.PAGE_NAMES[setting.name] == setting.page


def test_a_manifest_line_sets_each_per_edit_setting(tmp_path):
    image = tmp_path / "in.png"
    import PIL.Image

    PIL.Image.new("RGB", (32, 32)).save(image)
    PIL.Image.new("L", (32, 32), 255).save(tmp_path / "mask.png")
    samples = {int: 2, float: 0.5, str: "cat,dog"}
    line = {"id": "a", "image": "in.png", "mask": "mask.png", "prompt": "a red ball"}
    for field, setting in manifest.SETTING_FIELDS.items():
        value = setting.choices[-1] if setting.choices else samples[setting.type]
        line[field] = value
    (tmp_path / "edits.jsonl").write_text(__import__("json").dumps(line) + "\n")
    edit = manifest.read_manifest(tmp_path / "edits.jsonl", EditSettings())[0]
    asked = edit.request.asked()
    for field, setting in manifest.SETTING_FIELDS.items():
        assert asked[setting.name] == (line[field] if setting.type is not float else float(line[field]))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(num_inference_steps=0), "--steps must be an integer >= 1"),
        (dict(restart_at=1.0), r"--restart-at must be in \[0, 1\)"),
        (dict(rank_by="crop"), "--rank-by must be one of"),
        (dict(rank_rivals="cat"), "--rank-rivals 'cat': each group needs two or more distinct names"),
        (dict(rank_rivals="cat,;dog,fox"), "--rank-rivals 'cat,;dog,fox': each group needs"),
        (dict(candidates_per_result=0), "--candidates must be an integer >= 1"),
        (dict(strength=0.01, num_inference_steps=10), "--strength 0.01 of --steps 10 runs no step"),
    ],
)
def test_a_request_is_checked_by_the_table_under_the_front_ends_names(settings, message):
    request = EditRequest("a red ball", cli.Path("in.png"), cli.Path("m.png"), settings=EditSettings(**settings))
    request = dataclasses.replace(request, names=cli.NAMES)
    with pytest.raises(UsageError, match=message):
        request.check()


def test_settings_of_the_other_kind_are_refused_and_the_checkpoint_fills_the_rest():
    request = EditRequest("a", None, settings=EditSettings(latent_mask="nearest", fast=True), names=cli.NAMES)
    with pytest.raises(UsageError, match="--latent-mask applies to latent models only"):
        request.check_for("pixel", "--model m")
    with pytest.raises(UsageError, match="--fast applies to pixel models only"):
        request.check_for("latent", "--model m")
    resolved = resolve_settings("pixel", {"default_num_inference_steps": 30}, {"strength": 0.5})
    assert resolved["num_inference_steps"] == 30 and resolved["strength"] == 0.5
    assert resolved["clip_guidance_scale"] == BY_NAME["guidance_scale"].default_for("pixel")
    assert resolve_settings("latent", {}, {})["num_inference_steps"] == 50


def test_the_table_says_which_ranking_settings_cannot_act_and_which_were_asked_for():
    ranking = {s.name: s.ranks for s in SETTINGS if s.ranks}
    assert ranking == {
        "rank_by": "results",
        "rank_border_weight": "results",
        "rank_rivals": "results",
        "candidates_per_result": "results",
        "rank_denoiser_weight": "results",
        "restart_at": "run",
    }
    assert idle_rankings(True, "pil") == () and idle_rankings(True, "latent") == ("results",)
    assert idle_rankings(False, "pil") == idle_rankings(False, "latent") == ("results", "run")
    assert idle_rankings(True, "pil", False) == ("run",) and idle_rankings(True, "latent", False) == ("results", "run")
    checkpoint = {"default_rank_border_weight": 0.2, "default_restart_at": 0.3, "default_candidates_per_result": 3}
    resolved = resolve_settings("latent", checkpoint, {"rank_rivals": "a,b"})
    latents = idle_ranking_defaults("latent", resolved, {"rank_rivals": "a,b"}, idle_rankings(True, "latent"))
    assert (latents["rank_border_weight"], latents["candidates_per_result"], latents["restart_at"]) == (0.0, 1, 0.3)
    unranked = idle_ranking_defaults("latent", resolved, {"rank_rivals": "a,b"}, idle_rankings(False, "pil"))
    assert (unranked["rank_border_weight"], unranked["restart_at"], unranked["rank_rivals"]) == (0.0, 0.0, "a,b")
    assert [s.name for s in idle_rankings_asked("latent", unranked, ("results", "run"))] == ["rank_rivals"]
    assert not BY_NAME["rank_rivals"].asks_for(" ", "latent") and BY_NAME["rank_rivals"].asks_for("a,b", "latent")


def test_none_takes_the_default_and_the_output_says_what_was_used(pipe, image, mask):
    import numpy as np
    import torch

    def call(**options):
        generator = torch.Generator().manual_seed(0)
        fast = dict(num_inference_steps=4, num_augmentations=2, num_images_per_prompt=2, generator=generator)
        return pipe("a red ball", image, mask, **fast, **options)

    given = call()
    unset = call(eta=None, mask_blur=None, blend=None, guidance_end=None, clip_guidance_scale=None)
    assert all(np.array_equal(a, b) for a, b in zip(given.images, unset.images, strict=True))
    assert (unset.settings["eta"], unset.settings["blend"], unset.settings["guidance_end"]) == (0.0, True, 1.0)
    assert unset.settings["strength"] == pipe.config.default_strength and unset.settings["mixed_precision"] == "no"
