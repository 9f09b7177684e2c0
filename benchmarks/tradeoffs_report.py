"""Tables and plots of ``tradeoffs.py``'s results: what a reader compares, drawn from the JSON alone."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import heading
from blended_pipeline.ranking import RANK_BY
from blended_pipeline.shapes.edits import EDIT_SETS


def pareto_front(runs: list[dict]) -> list[int]:
    """Indices of the runs no other run beats on both seconds per image (lower) and top-1 success (higher)."""
    front = []
    for i, run in enumerate(runs):
        dominated = any(
            other["seconds_per_image"] <= run["seconds_per_image"]
            and other["top1_success"] >= run["top1_success"]
            and (other["seconds_per_image"], other["top1_success"]) != (run["seconds_per_image"], run["top1_success"])
            for other in runs
        )
        if not dominated:
            front.append(i)
    return front


def scheduler_name(run: dict) -> str:
    return f"ddim eta {run['eta']:g}" if run["scheduler"] == "ddim" else run["scheduler"]


def name(run: dict) -> str:
    every = run.get("guidance_every", 1)  # results files written before the options have none
    end = run.get("guidance_end", 1.0)
    scale = run.get("clip_guidance_scale", 1000.0)
    return run["label"] or (
        f"{scheduler_name(run)} {run['num_inference_steps']} steps, {f'guidance {scale:g}, ' if scale != 1000 else ''}"
        f"{run['num_augmentations']} views, "
        f"{f'guided every {every}, ' if every > 1 else ''}{f'guided the first {end:.0%}, ' if end < 1 else ''}"
        f"{'exact' if run['backprop_through_unet'] else 'cheap'}, "
        f"{'fp32' if run['mixed_precision'] == 'no' else run['mixed_precision']}"
    )


def headline(runs: list[dict]) -> dict:
    """The fastest configuration whose top-1 success is within 5 points of the best."""
    best = max(run["top1_success"] for run in runs)
    eligible = [run for run in runs if run["top1_success"] >= best - 0.05]
    fastest = min(eligible, key=lambda run: run["seconds_per_image"])
    return {
        "best_top1_success": best,
        "fastest_within_5_points": name(fastest),
        **{k: fastest[k] for k in ("top1_success", "seconds_per_image")},
    }


def markdown(results: dict) -> str:
    """The tables of the parts that ran, under a line naming machine, date, command and settings."""
    settings = results["settings"]
    lines = [
        heading(results),
        f"Edits: `edit_cases({EDIT_SETS['judged']}, {results['edits']}, 32)`; strength {settings['strength']}, "
        f"guidance scale {settings['clip_guidance_scale']:g} unless a row names another; seconds include ranking; "
        "peak MB: "
        f"{'GPU allocated' if 'cuda' in results.get('device', '') else 'CPU peak RSS'} "
        f"({results['resident_memory_mb_after_loading']:.0f} MB resident after loading, before any edit).",
    ]
    if "merged_from" in results:
        lines.insert(1, "Merged from the runs: " + "; ".join(f"`{command}`" for command in results["merged_from"]))
    if "sweep" in results:
        head = results["headline"]
        lines += [
            "",
            f"Headline: best top-1 success {head['best_top1_success']:.0%}; fastest within 5 points: "
            f"{head['fastest_within_5_points']} ({head['top1_success']:.0%} at {head['seconds_per_image']:.2f} s "
            "per image).",
            "",
            "### Sweep (P = on the Pareto front of seconds per image against top-1 success)",
            "",
            "| configuration | s/image | UNet evals/image | CLIP evals/image | peak MB | top-1 | batch precision | "
            "CLIP score | bg PSNR before paste (dB) | seam step (input) | diversity | P |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        front = set(results["pareto_front"])
        lines += [row(run, "P" if i in front else "") for i, run in enumerate(results["sweep"])]
    if "ablations" in results:
        lines += [
            "",
            "### Ablations",
            "",
            "| variant | s/image | UNet evals/image | CLIP evals/image | peak MB | top-1 | batch precision "
            "(= a random pick) | CLIP score | bg PSNR before paste (dB) | seam step (input) | diversity | |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [row(run, "") for run in results["ablations"]]
        lines += [
            "",
            "Ranking: top-1 success when the results are ranked by CLIP on the masked region (the paper), on the "
            "whole image, on both (the sum, the default), against a random pick (the batch precision).",
            "",
            "| variant | masked region | whole image | both | random pick |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {name(run)} | "
            + " | ".join(f"{run['top1_success_by_ranking'][rank_by]:.0%}" for rank_by in RANK_BY)
            + f" | {run['batch_precision']:.0%} |"
            for run in results["ablations"]
        ]
    if "repaint" in results:
        peer = results["repaint"]
        lines += [
            "",
            f"### Peer: diffusers RePaintPipeline, same UNet, no text ({peer['steps']} steps, jump length "
            f"{peer['jump_length']}, {peer['jump_n_sample']} resamplings)",
            "",
            "| pipeline | s/image | peak MB | judge success (first sample) | bg PSNR (dB) | seam step | diversity |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| RePaint | {peer['seconds_per_image']:.2f} | {peer['peak_memory_mb']:.0f} | "
            f"{peer['first_sample_success']:.0%} | {peer['background_psnr']:.1f} | {peer['seam_step']:.1f} | "
            f"{peer['diversity']:.1f} |",
        ]
    if "cost_growth" in results:
        cost = results["cost_growth"]
        lines += [
            "",
            f"### Cost growth ({cost['steps']} schedule steps)",
            "",
            "| samples | s/image, one batch | s/image, one at a time | peak MB, batch | peak MB, one at a time |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {b['samples']} | {b['batch_seconds_per_image']:.2f} | {b['one_at_a_time_seconds_per_image']:.2f} | "
            f"{b['batch_peak_memory_mb']:.0f} | {b['one_at_a_time_peak_memory_mb']:.0f} |"
            for b in cost["batching"]
        ]
        lines += ["", "| image side (crop path) | s per edit | peak MB |", "| --- | --- | --- |"]
        lines += [
            f"| {s['size']} | {s['seconds_per_edit']:.2f} | {s['peak_memory_mb']:.0f} |" for s in cost["image_size"]
        ]
    return "\n".join(lines) + "\n"


def row(run: dict, mark: str) -> str:
    return (
        f"| {name(run)} | {run['seconds_per_image']:.2f} | {run['unet_evaluations_per_image']:.0f} | "
        f"{run['clip_evaluations_per_image']:.0f} | {run['peak_memory_mb']:.0f} | {run['top1_success']:.0%} | "
        f"{run['batch_precision']:.0%} | {run['clip_score_top1']:.3f} | {run['background_psnr_before_paste']:.1f} | "
        f"{run['seam_step']:.1f} ({run['input_seam_step']:.1f}) | {run['diversity']:.1f} | {mark} |"
    )


def plain_log_ticks(axes, ticks: list[float]) -> None:
    """A log x axis labelled at ``ticks`` in plain numbers, without matplotlib's minor-tick labels."""
    from matplotlib.ticker import NullFormatter

    axes.set_xticks(ticks, [f"{t:g}" for t in ticks])
    axes.xaxis.set_minor_formatter(NullFormatter())


def plot(results: dict, prefix: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    if "sweep" in results:
        plot_pareto(results, prefix)
    if "cost_growth" in results:
        plot_cost(results["cost_growth"], prefix)


def plot_pareto(results: dict, prefix: Path) -> None:
    import matplotlib.pyplot as plt

    runs, front = results["sweep"], results["pareto_front"]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    schedulers = sorted({scheduler_name(run) for run in runs})
    for scheduler, marker in zip(schedulers, "osD^v<>", strict=False):
        chosen = [run for run in runs if scheduler_name(run) == scheduler]
        axes.scatter(
            [run["seconds_per_image"] for run in chosen],
            [run["top1_success"] for run in chosen],
            marker=marker,
            label=scheduler,
            alpha=0.7,
        )
    ordered = sorted((runs[i] for i in front), key=lambda run: run["seconds_per_image"])
    axes.step(
        [run["seconds_per_image"] for run in ordered],
        [run["top1_success"] for run in ordered],
        where="post",
        color="black",
        linewidth=1,
        label="Pareto front",
    )
    axes.set(xscale="log", xlabel="seconds per image (log)", ylabel="top-1 success (pixel judge)", ylim=(0, 1))
    plain_log_ticks(axes, [0.25, 0.5, 1, 2, 4, 8])
    axes.legend()
    figure.tight_layout()
    figure.savefig(f"{prefix}-pareto.png", dpi=120)
    plt.close(figure)


def plot_cost(cost: dict, prefix: Path) -> None:
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    samples = [b["samples"] for b in cost["batching"]]
    left.plot(samples, [b["batch_seconds_per_image"] for b in cost["batching"]], "o-", label="one batch")
    left.plot(samples, [b["one_at_a_time_seconds_per_image"] for b in cost["batching"]], "s--", label="one at a time")
    left.set(xlabel="samples", ylabel="seconds per image", xscale="log", ylim=(0, None))
    plain_log_ticks(left, samples)
    left.legend()
    sizes = [s["size"] for s in cost["image_size"]]
    right.plot(sizes, [s["seconds_per_edit"] for s in cost["image_size"]], "o-")
    right.set(xlabel="image side (pixels, crop path)", ylabel="seconds per edit", xscale="log", ylim=(0, None))
    plain_log_ticks(right, sizes)
    figure.tight_layout()
    figure.savefig(f"{prefix}-cost.png", dpi=120)
    plt.close(figure)
