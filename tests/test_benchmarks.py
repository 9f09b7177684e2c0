"""The benchmark scripts (in their --smoke setting) and the examples run end to end, so they cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.clip_regions import drawn_in
from benchmarks.common import kinds_in, load_kept, with_all_hard
from benchmarks.metrics import summary
from benchmarks.tradeoffs_report import pareto_front
from blended_pipeline import SHAPES_CHECKPOINT, SHAPES_LATENT_CHECKPOINT
from blended_pipeline.shapes.edits import edit_cases, hard_edit_cases
from blended_pipeline.shapes.judge import judge

ROOT = Path(__file__).parent.parent


def test_shapes_targets_smoke(tmp_path):
    prefix = tmp_path / "targets"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "shapes_targets.py"), "--smoke", "--out", str(prefix)],
        check=True,
        capture_output=True,
    )
    results = json.loads(Path(f"{prefix}.json").read_text())
    assert 0 <= results["ddpm"]["valid_fraction"] <= 1
    assert 0 <= results["clip"]["zero_shot_accuracy"] <= 1
    assert [(r["num_augmentations"], r["backprop_through_unet"]) for r in results["edits"]] == [
        (8, True),
        (1, True),
        (8, False),
    ]
    assert all(run["background_exact"] == 1.0 for run in results["edits"])
    assert "| measure | value | target |" in Path(f"{prefix}.md").read_text()
    assert Path(f"{prefix}-samples.png").stat().st_size > 0


def test_paper_config_smoke(tmp_path):
    prefix = tmp_path / "paper"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "paper_config.py"),
            "--smoke",
            "--channels-last",
            "--out",
            str(prefix),
        ],
        check=True,
        capture_output=True,
    )
    results = json.loads(Path(f"{prefix}.json").read_text())
    assert results["smoke"] and [r["precision"] for r in results["runs"]] == ["no", "bf16"] * 2
    assert [r["unet_layout"] for r in results["runs"]] == ["NCHW"] * 2 + ["channels-last"] * 2
    assert all(r["seconds_per_image"] > 0 and r["peak_memory_mb"] > 0 for r in results["runs"])


def run_benchmark(tmp_path: Path, script: str, *arguments: str) -> tuple[Path, dict]:
    prefix = tmp_path / Path(script).stem
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *arguments, "--out", str(prefix)],
        check=True,
        capture_output=True,
    )
    return prefix, json.loads(Path(f"{prefix}.json").read_text())


def run_smoke(tmp_path, script: str, *options: str) -> tuple[Path, dict]:
    return run_benchmark(tmp_path, script, "--smoke", *options)


def test_applications_smoke(tmp_path):
    prefix, results = run_smoke(tmp_path, "applications.py")
    assert results["background"]["object_exact"] == 1.0
    assert all(run["outside_exact"] == 1.0 for run in results["scribble"])
    assert [run["fill"] for run in results["extrapolation"]] == ["edge", "mirror", "noise"]
    assert all(run["original_exact"] == 1.0 for run in results["extrapolation"])
    assert results["large"]["large_outside_exact"] == 1.0
    assert "| application | measure | value | target |" in Path(f"{prefix}.md").read_text()


def test_applications_measures_only_the_parts_asked_for(tmp_path):
    prefix, results = run_smoke(tmp_path, "applications.py", "--parts", "scribble", "--seed", "9")
    assert results["seed"] == 9 and "scribble" in results
    assert not {"background", "extrapolation", "large"} & set(results)
    assert "scribble, strength" in Path(f"{prefix}.md").read_text()


def test_edit_settings_smoke(tmp_path):
    prefix, results = run_smoke(tmp_path, "edit_settings.py", "--scales", "1000,2000", "--strengths", "0.5,1")
    assert [(r["clip_guidance_scale"], r["strength"]) for r in results["runs"]] == [
        (1000, 0.5),
        (1000, 1),
        (2000, 0.5),
        (2000, 1),
    ]
    for run in results["runs"]:
        assert sum(run["top1_failures"].values()) == round((1 - run["top1_success"]) * run["edits"])
    assert results["settings"]["strength"] == 0.9  # the shipped checkpoint's own default
    assert "| guidance scale | strength |" in Path(f"{prefix}.md").read_text()


def test_tradeoffs_smoke(tmp_path):
    prefix, results = run_smoke(tmp_path, "tradeoffs.py")
    first = results["sweep"][0]
    # The shipped checkpoint's strength 0.9 of 4 steps runs 3, one UNet call each.
    assert first["num_inference_steps"] == 4 and first["unet_evaluations_per_image"] == 3
    # 2 views a step, then the masked and whole ranking views twice: the checkpoint's restart from the best, the end
    assert first["clip_evaluations_per_image"] == 3 * 2 + 2 + 2
    assert results["pareto_front"] and set(results["pareto_front"]) <= set(range(len(results["sweep"])))
    algorithm1 = [run for run in results["ablations"] if not run["blend"]]
    blended = [run for run in results["ablations"] if run["blend"]]
    assert algorithm1 and blended[0]["background_psnr_before_paste"] > algorithm1[0]["background_psnr_before_paste"]
    assert results["repaint"]["background_psnr"] > 40
    assert [b["samples"] for b in results["cost_growth"]["batching"]] == [1, 2]
    for suffix in ("-pareto.png", "-cost.png", ".md"):
        assert Path(f"{prefix}{suffix}").stat().st_size > 0


def test_tradeoffs_runs_only_the_parts_asked_for(tmp_path):
    prefix, results = run_smoke(tmp_path, "tradeoffs.py", "--parts", "repaint")
    assert "repaint" in results and not {"sweep", "ablations", "cost_growth"} & set(results)
    table = Path(f"{prefix}.md").read_text()
    assert "RePaint" in table and "Sweep" not in table


def test_pareto_front_keeps_only_undominated_runs():
    runs = [
        {"seconds_per_image": 1.0, "top1_success": 0.5},
        {"seconds_per_image": 2.0, "top1_success": 0.4},  # slower and worse than the first
        {"seconds_per_image": 3.0, "top1_success": 0.8},
        {"seconds_per_image": 0.5, "top1_success": 0.1},
        {"seconds_per_image": 3.0, "top1_success": 0.7},  # as slow as the third, worse
    ]
    assert pareto_front(runs) == [0, 2, 3]


def test_kept_results_of_several_sets_are_joined_per_kind(tmp_path):
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    np.savez(first, **{"small/verdicts": np.array([[True, False]]), "standard/verdicts": np.array([[True, True]])})
    np.savez(second, **{"small/verdicts": np.array([[False, False], [True, True]])})
    kept = load_kept([first, second])
    assert kinds_in(kept) == ["small", "standard"]
    np.testing.assert_array_equal(kept["small/verdicts"], [[True, False], [False, False], [True, True]])
    np.testing.assert_array_equal(kept["standard/verdicts"], [[True, True]])


def test_all_hard_row_adds_counts_and_averages_shares_over_the_hard_kinds_only():
    rows = {
        "small": {"edits": 2, "top1": 0.5, "refused": {"wrong shape": 3}, "by_weight": {"0.2": 1.0}},
        "wide": {"edits": 2, "top1": 1.0, "refused": {"wrong shape": 1}, "by_weight": {"0.2": 0.5}},
        "standard": {"edits": 2, "top1": 0.0, "refused": {"wrong shape": 9}, "by_weight": {"0.2": 0.0}},
    }
    combined = with_all_hard(rows, summed=("edits", "refused"))
    assert list(combined) == ["small", "wide", "standard", "all hard"]
    assert combined["all hard"] == {"edits": 4, "top1": 0.75, "refused": {"wrong shape": 4}, "by_weight": {"0.2": 0.75}}
    assert list(with_all_hard({"standard": rows["standard"]})) == ["standard"]


def test_summary_counts_top_results_edits_with_any_accepted_and_the_share_of_results_accepted():
    def edit(verdicts, failures):
        return {
            "verdicts": verdicts,
            "failures": failures,
            "diversity": 2.0,
            "seconds_per_image": 1.0,
            "seam_step": 3.0,
            "background_exact": True,
        }

    per_edit = [
        edit([True, False, False, True], ["wrong_shape", "too_small"]),
        edit([False, False, True, False], ["no_colour", "wrong_shape", "wrong_shape"]),
        edit([False, False, False, False], ["too_small"] * 4),
    ]
    row = summary(per_edit)
    assert row["top1_success"] == pytest.approx(1 / 3)
    assert row["any_success"] == pytest.approx(2 / 3)  # what a perfect ranking of these four would reach
    assert row["batch_precision"] == pytest.approx((2 / 4 + 1 / 4 + 0) / 3)
    assert row["refused_results"] == {"no_colour": 1, "too_small": 5, "wrong_shape": 3}


def test_examples_run(tmp_path):
    for script, output in (("edit_shapes_scene.py", tmp_path / "edit.png"), ("applications.py", tmp_path / "apps")):
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / script), "--steps", "4", "--out", str(output)],
            check=True,
            capture_output=True,
        )
    assert (tmp_path / "edit.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "apps").iterdir()) == [
        "1-object.png",
        "2-background.png",
        "3-scribble.png",
        "4-extend.png",
        "5-large-soft.png",
    ]


def test_a_sweep_shared_by_two_processes_merges_in_grid_order(tmp_path):
    forward, first = run_smoke(tmp_path / "a", "tradeoffs.py", "--parts", "sweep")
    backward, second = run_smoke(tmp_path / "b", "tradeoffs.py", "--parts", "sweep", "--reverse")
    assert [run["scheduler"] for run in second["sweep"]] == [run["scheduler"] for run in first["sweep"]]
    merged = tmp_path / "merged"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "tradeoffs.py"), "--smoke", "--out", str(merged), "--merge"]
        + [str(forward), str(backward)],
        check=True,
        capture_output=True,
    )
    results = json.loads(Path(f"{merged}.json").read_text())
    assert len(results["sweep"]) == len(first["sweep"]) and len(results["merged_from"]) == 2
    assert "Merged from the runs" in Path(f"{merged}.md").read_text()


def test_cli_startup_benchmark_runs(tmp_path):
    prefix = tmp_path / "startup"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cli_startup.py"), "--repeats", "1", "--out", str(prefix)],
        check=True,
        capture_output=True,
    )
    results = json.loads(Path(f"{prefix}.json").read_text())
    assert set(results["runs"]) == {"--help", "a mistyped flag", "a missing image file"}
    assert all(run["median_seconds"] > 0 for run in results["runs"].values())


def test_batch_smoke(tmp_path):
    _, results = run_smoke(tmp_path, "batch.py")
    assert [row["processes"] for row in results["rows"]] == [1, 2, 1]
    assert all(row["edits_per_second"] > 0 for row in results["rows"])
    assert sum(p["done"] for p in results["rows"][1]["per_process"]) == results["edits"] == 2


def test_latent_vs_pixel_smoke(tmp_path):
    _, results = run_smoke(tmp_path, "latent_vs_pixel.py")
    for name in ("pixel", "latent"):
        assert results[name]["edits"] == 2 and results[name]["background_exact"] == 1.0
        assert 0 <= results[name]["top1_success"] <= 1 and results[name]["seconds_per_image"] > 0
    assert (
        results["settings"]["latent"]["guidance_scale"] == 7.5 and "num_augmentations" in results["settings"]["pixel"]
    )


def test_sd2_config_smoke(tmp_path):
    _, results = run_smoke(tmp_path, "sd2_config.py", "--device", "cpu", "--precisions", "no")
    assert [run["pipeline"].split()[0] for run in results["runs"]] == ["latent", "pixel"]
    assert all(run["seconds_per_image"] > 0 and run["peak_memory_mb"] > 0 for run in results["runs"])


def test_profile_step_times_every_phase(tmp_path):
    prefix, results = run_benchmark(tmp_path, "profile_step.py", "--samples", "1", "--views", "2", "--repeats", "1")
    phases = results["seconds"]
    assert {"unet forward", "clip backward", "unet backward", "whole step", "ranking (once per edit)"} <= set(phases)
    assert all(seconds > 0 for seconds in phases.values())
    assert sum(phases[name] for name in ("unet forward", "clip backward", "unet backward")) < phases["whole step"]
    assert "| whole step |" in Path(f"{prefix}.md").read_text()


def test_latent_settings_smoke(tmp_path):
    _, results = run_benchmark(tmp_path, "latent_settings.py", "--smoke", "--strengths", "0.9,1", "--steps", "8")
    assert [row["strength"] for row in results["rows"]] == [0.9, 1.0]
    assert all(0 <= row["top1_success"] <= 1 and row["background_exact"] == 1.0 for row in results["rows"])


def test_demo_speed_times_each_variant(tmp_path):
    variants = "four steps=--steps 4 --samples 1;eight steps=--steps 8 --samples 1"
    prefix, results = run_benchmark(tmp_path, "demo_speed.py", "--repeats", "1", "--variants", variants)
    assert list(results["median_seconds"]) == ["four steps", "eight steps"]
    assert all(seconds > 0 for seconds in results["median_seconds"].values())
    assert "| eight steps | `--steps 8 --samples 1` |" in Path(f"{prefix}.md").read_text()


@pytest.mark.skipif(
    not os.environ.get("BLENDED_AUTHORS_DIR"),
    reason="set BLENDED_AUTHORS_DIR to a checkout of omriav/blended-diffusion",
)
def test_vs_authors_runs_both_implementations(tmp_path):
    _, results = run_benchmark(
        tmp_path, "vs_authors.py", "--authors-dir", os.environ["BLENDED_AUTHORS_DIR"], "--steps", "1", "--samples", "1",
        "--views", "2", "--repeats", "1",
    )  # fmt: skip
    assert results["image_tower_relative_difference"] < 1e-4
    assert set(results["seconds_per_sample"]) == {"authors", "ours"}


def test_hard_edits_smoke_reports_every_kind_and_applies_settings(tmp_path):
    prefix, results = run_smoke(
        tmp_path, "hard_edits.py", "--setting", "guidance_every=2", "--setting", "rank_by=whole"
    )
    assert list(results["rows"]) == ["small", "wide", "ellipse", "replace", "standard", "all hard"]
    assert results["settings"]["guidance_every"] == 2 and results["settings"]["rank_by"] == "whole"
    assert all(row["background_exact"] == 1.0 for row in results["rows"].values())
    samples = results["settings"]["num_images_per_prompt"]
    for kind in ("small", "wide", "ellipse", "replace", "standard"):  # each refused result counted under one reason
        row = results["rows"][kind]
        assert sum(row["refused_results"].values()) == round(row["edits"] * samples * (1 - row["batch_precision"]))
    hard = [results["rows"][kind]["refused_results"] for kind in ("small", "wide", "ellipse", "replace")]
    totals = {reason: sum(refused[reason] for refused in hard) for reason in hard[0]}
    assert results["rows"]["all hard"]["refused_results"] == totals
    assert "| all hard |" in Path(f"{prefix}.md").read_text()
    assert all(0 <= row["diversity"] <= 255 for row in results["rows"].values())
    assert "| batch precision | diversity |" in Path(f"{prefix}.md").read_text()


def test_kept_results_can_be_ranked_again(tmp_path):
    kept = tmp_path / "kept.npz"
    _, hard = run_smoke(tmp_path, "hard_edits.py", "--kinds", "small,standard", "--keep-results", str(kept))
    arrays = np.load(kept)
    samples = hard["settings"]["num_images_per_prompt"]
    assert arrays["small/results"].shape == (1, samples, 32, 32, 3) and arrays["small/verdicts"].shape == (1, samples)
    _, rerank = run_benchmark(tmp_path, "rerank.py", "edge", str(kept), "--weights", "0,1000", "--best", str(samples))
    assert list(rerank["rows"]) == ["small", "standard", "all hard"]
    for kind in ("small", "standard"):
        row = rerank["rows"][kind]
        assert row["batch_precision"] == hard["rows"][kind]["batch_precision"]
        assert row["diversity"] == pytest.approx(hard["rows"][kind]["diversity"])  # beside it, from the same results
        assert set(row["top1_by_weight"]) == {"0.0", "1000.0"}
        assert all(value in (0.0, 1.0) for value in row["top1_by_weight"].values())  # one edit each
        assert all(value == row["batch_precision"] for value in row["best_precision_by_weight"].values())  # all shown
    _, best_one = run_benchmark(tmp_path, "rerank.py", "edge", str(kept), "--weights", "0,1000", "--best", "1")
    assert all(row["best_precision_by_weight"] == row["top1_by_weight"] for row in best_one["rows"].values())
    refused = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rerank.py"), "edge", str(kept), "--best", str(samples + 1)]
        + ["--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and f"--best: expected 1 to {samples}" in refused.stderr
    _, shipped = run_benchmark(tmp_path, "rerank.py", "edge", str(kept), "--weights", "0.2")
    _, views = run_benchmark(tmp_path, "rerank.py", "views", str(kept), "--search")
    assert list(views["rows"]) == ["small", "standard", "all hard"]
    assert len(views["rankings"]) == len(views["rows"]["small"]["top1"]) > 1
    searched = next(name for name in views["rankings"] if name.startswith("searched"))
    best = views["rows"]["all hard"]["top1"]
    assert best[searched] >= best["masked + whole (shipped)"]  # the shipped weights are in the grid searched
    for kind in ("small", "standard"):
        row = views["rows"][kind]
        assert row["batch_precision"] == pytest.approx(hard["rows"][kind]["batch_precision"])
        assert row["any"] == float(arrays[f"{kind}/verdicts"].any())
        assert all(top1 <= row["any"] for top1 in row["top1"].values())  # no ranking beats the best result
        assert row["top1"]["masked + whole (shipped)"] == shipped["rows"][kind]["top1_by_weight"]["0.2"]
    guiding_clip = str(Path(SHAPES_CHECKPOINT) / "clip_model")
    _, same_clip = run_benchmark(tmp_path, "rerank.py", "views", str(kept), "--ranking-clip", guiding_clip)
    assert same_clip["ranking_clip"] == guiding_clip
    assert {kind: row["top1"] for kind, row in same_clip["rows"].items()} == {
        kind: {name: row["top1"][name] for name in same_clip["rankings"]} for kind, row in views["rows"].items()
    }


def test_latent_results_are_ranked_again_with_the_latent_checkpoints_own_edge_weight(tmp_path):
    kept = tmp_path / "kept.npz"
    run_smoke(tmp_path, "hard_edits.py", "--model", "latent", "--kinds", "small", "--keep-results", str(kept))
    latent = str(SHAPES_LATENT_CHECKPOINT)
    _, views = run_benchmark(tmp_path, "rerank.py", "views", str(kept), "--model", latent)
    _, edge = run_benchmark(tmp_path, "rerank.py", "edge", str(kept), "--model", latent, "--weights", "0")
    assert views["rankings"]["masked + whole (shipped)"] == {"masked": 1, "whole": 1, "edge": 0.0}
    assert views["rows"]["small"]["top1"]["masked + whole (shipped)"] == edge["rows"]["small"]["top1_by_weight"]["0.0"]


def test_hard_edits_runs_only_the_kinds_asked(tmp_path):
    _, results = run_smoke(tmp_path, "hard_edits.py", "--kinds", "small,standard")
    assert list(results["rows"]) == ["small", "standard", "all hard"]
    refused = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "hard_edits.py"), "--out", str(tmp_path / "x"), "--kinds", "tiny"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "--kinds: unknown tiny" in refused.stderr


def test_hard_edits_dilated_blend_and_views_change_the_results(tmp_path):
    plain, candidate = tmp_path / "plain.npz", tmp_path / "candidate.npz"
    run_smoke(tmp_path / "a", "hard_edits.py", "--kinds", "small", "--keep-results", str(plain))
    prefix, results = run_smoke(
        tmp_path / "b",
        "hard_edits.py",
        "--kinds",
        "small",
        "--dilation",
        "4,1",
        "--augment",
        "distortion=0.2",
        "--keep-results",
        str(candidate),
    )
    assert results["dilation"] == [4, 1.0] and results["augmentation"] == {"distortion": 0.2}
    assert "dilated by 4 px" in Path(f"{prefix}.md").read_text()
    assert not np.array_equal(np.load(plain)["small/results"], np.load(candidate)["small/results"])
    for arguments, message in (
        (["--dilation", "x"], "--dilation: expected R,U"),
        (["--dilation=-1,0.5"], "max_dilation must be >= 0"),
        (["--augment", "warp=1"], "unexpected keyword argument 'warp'"),
    ):
        refused = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "hard_edits.py"), "--out", str(tmp_path / "x"), *arguments],
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 2 and message in refused.stderr, arguments


def test_clip_regions_draws_what_the_judge_accepts_and_reports_each_kind(tmp_path):
    rng = np.random.default_rng(0)
    cases = [case for kind in hard_edit_cases(3, 10, 32).values() for case in kind] + edit_cases(3, 10, 32)
    pairs = [(drawn_in(case, rng), case) for case in cases]
    assert all((picture[~case.mask] == case.image[~case.mask]).all() for picture, case in pairs)
    assert np.mean([judge(picture, case.mask, case.prompt).ok for picture, case in pairs]) >= 0.9
    _, results = run_benchmark(tmp_path, "clip_regions.py", "--models", "shipped=SHIPPED", "--cases", "3")
    assert set(results["accuracy"]["shipped"]) == {"small", "wide", "ellipse", "replace", "standard"}
    assert all(0 <= value <= 1 for value in results["accuracy"]["shipped"].values())


def test_families_vs_diffusers_smoke(tmp_path):
    _, results = run_smoke(tmp_path, "families_vs_diffusers.py", "--families", "sdxl", "flux")
    assert list(results["families"]) == ["sdxl", "flux"]
    for family in results["families"].values():
        assert family["per_step"]["diffusers"] and family["per_step"]["ours"]
        assert family["extras"]["reconstruction_seconds"] > 0  # fitting a decoder costs more than pasting


def test_latent_vs_diffusers_smoke_keeps_our_background_and_times_both(tmp_path):
    prefix, results = run_smoke(tmp_path, "latent_vs_diffusers.py")
    ours, theirs = results["quality"]["ours"], results["quality"]["diffusers"]
    assert list(ours) == list(theirs) == ["small", "wide", "ellipse", "replace", "standard", "all hard"]
    assert all(row["background_exact"] == 1.0 and row["outside_change"] == 0 for row in ours.values())
    assert theirs["all hard"]["outside_change"] > 0  # diffusers' output is the decoder's, outside the mask too
    assert results["per_step"]["ours"] > 0 and results["per_step"]["diffusers"] > 0
    assert "| diffusers' inpaint (first result) | standard |" in Path(f"{prefix}.md").read_text()


def test_hard_edits_on_the_latent_checkpoint_with_mask_shrinking(tmp_path):
    _, results = run_smoke(tmp_path, "hard_edits.py", "--model", "latent", "--shrink-mask", "--kinds", "small")
    assert results["shrink_mask"] == [3, 2, 1, 0] and "guidance_scale" in results["settings"]
    assert results["rows"]["small"]["background_exact"] == 1.0
    pixel = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "hard_edits.py"),
            "--smoke",
            "--shrink-mask",
            "--out",
            str(tmp_path / "p"),
        ],
        capture_output=True,
        text=True,
    )
    assert pixel.returncode == 2 and "needs a latent model" in pixel.stderr


def test_the_tradeoff_grids_start_from_the_checkpoint_defaults():
    from benchmarks.tradeoffs import at_defaults, sweep_configs

    defaults = {"num_inference_steps": 50, "clip_guidance_scale": 1000.0, "num_augmentations": 8, "restart_at": 0.3}
    anchor = at_defaults(defaults)
    grid = sweep_configs("headline", anchor)
    assert grid[0] == anchor and anchor.num_inference_steps == 50
    assert all(
        sum(getattr(config, field) != getattr(anchor, field) for field in anchor.__dataclass_fields__) <= 2
        for config in grid
    )  # each row changes one setting (the scheduler with its steps counts as one change of two fields)
    assert {config.num_inference_steps for config in sweep_configs("full", anchor)} >= {10, 25, 50}


def test_headline_names_each_figure_and_needs_the_authors_checkout_for_theirs(tmp_path):
    from benchmarks.headline import FIGURES

    script = [sys.executable, str(ROOT / "benchmarks" / "headline.py")]
    authors = tmp_path / "authors"
    (authors / "optimization").mkdir(parents=True)
    listed = subprocess.run([*script, "--dry-run", "--authors-dir", str(authors)], capture_output=True, text=True)
    lines = listed.stdout.splitlines()
    assert listed.returncode == 0 and len(lines) == len(FIGURES)
    for line, (name, (file, *_)) in zip(lines, FIGURES.items(), strict=True):
        assert line.startswith(f"benchmarks/{file}") and line.endswith(f"--out docs/figures/{name}")
    refused = subprocess.run([*script, "--dry-run"], capture_output=True, text=True)
    assert refused.returncode == 2 and "vs_authors needs --authors-dir" in refused.stderr
    some = subprocess.run([*script, "--dry-run", "--only", "demo_speed"], capture_output=True, text=True)
    assert some.stdout.split() == ["benchmarks/demo_speed.py", "--out", "docs/figures/demo_speed"]


def test_latent_ceiling_judges_ideal_edits_as_drawn_and_through_the_vae(tmp_path):
    from benchmarks.metrics import PSNR_CAP

    prefix, results = run_benchmark(tmp_path, "latent_ceiling.py", "--edits", "3", "--set", "tuning")
    rows, per_edit = results["rows"], results["results_per_edit"]
    assert list(rows) == ["small", "wide", "ellipse", "replace", "standard", "all hard"]
    assert rows["all hard"]["edits"] == 12 and all(rows[kind]["ideal_accepted"] == 1.0 for kind in rows)
    for row in rows.values():
        refused = sum(row["refused_results"].values())
        assert refused == round(row["edits"] * per_edit * (1 - row["round_trip_accepted"]))
        assert row["round_trip_any_accepted"] >= row["round_trip_accepted"]
        assert row["psnr_in_mask_db"] < PSNR_CAP  # the VAE loses detail
    assert "| standard | 100% |" in Path(f"{prefix}.md").read_text()
    refused = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "latent_ceiling.py"), "--edits", "0", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "expected at least 1 edit per kind" in refused.stderr


def test_a_lossless_round_trip_keeps_every_ideal_edit():
    from benchmarks.latent_ceiling import judged_kind
    from benchmarks.metrics import PSNR_CAP

    class Lossless:
        """An autoencoder whose decoding gives back exactly what it encoded."""

        def encode(self, pixels):
            return SimpleNamespace(latent_dist=SimpleNamespace(mean=pixels))

        def decode(self, latents):
            return SimpleNamespace(sample=latents)

    cases = hard_edit_cases(7, 4, 32)["small"]
    row = judged_kind(Lossless(), cases, np.random.default_rng(0))
    assert row["ideal_accepted"] == row["round_trip_accepted"] == row["round_trip_any_accepted"] == 1.0
    assert row["psnr_in_mask_db"] == PSNR_CAP and sum(row["refused_results"].values()) == 0


def test_candidates_cost_pools_the_sets_and_scales_the_speed_by_the_latent_time(tmp_path):
    def run(edit_set, count, top1, seconds, edits=2, machine="m", steps=25):
        row = {"edits": edits, "top1_success": top1, "any_success": 1.0, "batch_precision": top1, "diversity": 30.0}
        kinds = {kind: row | {"seconds_per_edit": seconds} for kind in ("small", "wide", "ellipse", "replace")}
        kinds["standard"] = row | {"seconds_per_edit": seconds, "top1_success": 1.0, "batch_precision": 1.0}
        kinds["all hard"] = row | {"edits": 4 * edits, "seconds_per_edit": seconds}
        path = tmp_path / f"{edit_set}-{count}.json"
        settings = {"candidates_per_result": count, "num_images_per_prompt": 4, "num_inference_steps": steps}
        fields = {"set": edit_set, "edits_per_kind": edits, "commit": "abc", "machine": machine, "date": "d"}
        path.write_text(json.dumps(fields | {"settings": settings, "rows": kinds}))
        return str(path)

    speed = tmp_path / "speed.json"
    speed.write_text(
        json.dumps(
            {"machine": "m", "settings": {"latent": {"candidates_per_result": 4}}, "latent_speedup_per_image": 6.0}
        )
    )
    runs = [run("a", 4, 0.5, 1.0), run("b", 4, 1.0, 1.0, edits=6), run("a", 8, 1.0, 2.0), run("b", 8, 1.0, 2.0)]
    command = [sys.executable, "benchmarks/candidates_cost.py", "--speed", str(speed), "--out", str(tmp_path / "out")]
    subprocess.run([*command, "--runs", *runs], check=True, capture_output=True)
    rows = json.loads((tmp_path / "out.json").read_text())["rows"]
    assert [(row["candidates"], row["made"]) for row in rows] == [(4, 16), (8, 32)]
    assert rows[0]["kinds"]["small"] == pytest.approx(
        {
            "edits": 8,
            "top1_success": 0.875,
            "any_success": 1.0,
            "batch_precision": 0.875,
            "diversity": 30.0,
            "seconds_per_edit": 1.0,
        }
    )
    assert rows[0]["precision_mean_of_kinds"] == pytest.approx((4 * 0.875 + 1.0) / 5)
    assert [row["faster_than_pixel"] for row in rows] == pytest.approx([6.0, 3.0])
    assert "| 8 (32) | 100.0% |" in (tmp_path / "out.md").read_text()

    unmatched = subprocess.run([*command, "--runs", *runs[:3]], capture_output=True, text=True)
    assert unmatched.returncode != 0 and "the same edit sets" in unmatched.stderr
    elsewhere = subprocess.run([*command, "--runs", *runs[:3], run("b", 8, 1.0, 2.0, machine="x")], capture_output=True)
    assert elsewhere.returncode != 0 and b"one machine" in elsewhere.stderr
    other_steps = subprocess.run([*command, "--runs", *runs[:3], run("b", 8, 1.0, 2.0, steps=50)], capture_output=True)
    assert other_steps.returncode != 0 and b"num_inference_steps" in other_steps.stderr
