"""What more candidates per result buy and cost: ``hard_edits.py`` runs that differ only in
``candidates_per_result``, pooled over their edit sets, beside the speed against the pixel pipeline.

    python benchmarks/candidates_cost.py --runs docs/figures/hard_edits-latent-{confirm,fifth}48-c{4,6,8}.json \\
        --speed docs/figures/latent_vs_pixel-2026-12-07-epyc.json --out docs/figures/candidates_cost

Reads results files and runs nothing. Each candidate count's figures are the mean over its runs' edits (the runs
of one count must cover the same sets). The speed against the pixel pipeline at a count is ``--speed``'s ratio at
the checkpoint's defaults, scaled by the latent seconds per edit at the default count over those at that count,
all measured in the runs given; so every run should be timed alone on one machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

from benchmarks.common import provenance, write_results

MEANS = ("top1_success", "any_success", "batch_precision", "diversity", "seconds_per_edit")


def pooled(runs: list[dict]) -> dict[str, dict]:
    """Per kind (and "all hard"), each figure of ``MEANS`` averaged over the runs' edits, and the edit count."""
    rows: dict[str, dict] = {}
    for kind in runs[0]["rows"]:
        parts = [run["rows"][kind] for run in runs]
        edits = sum(part["edits"] for part in parts)
        rows[kind] = {"edits": edits} | {key: sum(part[key] * part["edits"] for part in parts) / edits for key in MEANS}
    return rows


def by_count(runs: list[dict]) -> dict[int, list[dict]]:
    """The runs grouped by candidates per result; refuses runs of one count over different sets."""
    groups: dict[int, list[dict]] = defaultdict(list)
    for run in runs:
        groups[run["settings"]["candidates_per_result"]].append(run)
    sets = {count: sorted(run["set"] for run in group) for count, group in groups.items()}
    if len({tuple(value) for value in sets.values()}) > 1:
        raise SystemExit(f"--runs: every candidate count needs runs on the same edit sets, got {sets}")
    return dict(sorted(groups.items()))


def refuse_mixed(runs: list[dict], speed: dict) -> None:
    """Refuses runs that differ in more than the candidate count, or were timed on another machine than
    ``speed``: their seconds and figures would not compare."""
    settings = [
        {key: value for key, value in run["settings"].items() if key != "candidates_per_result"} for run in runs
    ]
    differing = sorted({key for each in settings for key in each if each.get(key) != settings[0].get(key)})
    if differing:
        raise SystemExit(f"--runs: the runs must differ only in candidates_per_result, they also differ in {differing}")
    machines = {run["machine"] for run in runs} | {speed["machine"]}
    if len(machines) > 1:
        raise SystemExit(f"--runs and --speed: every run must be timed on one machine, got {sorted(machines)}")


def markdown(results: dict) -> str:
    lines = [
        f"Machine: {results['machine']}; commit {results['commit']}; date: {results['date']}; "
        f"command: `{results['command']}`",
        "Runs read: "
        + "; ".join(f"`{run['file']}` ({run['commit']}, {run['machine']}, {run['date']})" for run in results["runs"]),
        f"Edit sets: {', '.join(results['sets'])}, {results['edits_per_kind']} edits per kind in all. Speed against "
        f"the pixel pipeline at the defaults: {results['speed_at_defaults']:.1f}x (`{results['speed_file']}`).",
        "",
        "| candidates per result (made) | hard top-1 | small / wide / ellipse / replace | standard top-1 "
        "| batch precision, hard / standard / mean of kinds | diversity, hard | s per edit | faster than pixel |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["rows"]:
        kinds = row["kinds"]
        hard = kinds["all hard"]
        lines.append(
            f"| {row['candidates']} ({row['made']}) | {hard['top1_success']:.1%} | "
            + " / ".join(f"{kinds[kind]['top1_success']:.0%}" for kind in ("small", "wide", "ellipse", "replace"))
            + f" | {kinds['standard']['top1_success']:.1%} | {hard['batch_precision']:.1%} / "
            f"{kinds['standard']['batch_precision']:.1%} / {row['precision_mean_of_kinds']:.1%} | "
            f"{hard['diversity']:.1f} | {row['seconds_per_edit']:.2f} | {row['faster_than_pixel']:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="hard_edits.py results (.json)")
    parser.add_argument("--speed", type=Path, required=True, help="a latent_vs_pixel.py results file (.json)")
    parser.add_argument("--out", type=Path, required=True, help="prefix of the .json and .md written")
    args = parser.parse_args()
    runs = [json.loads(path.read_text()) | {"file": str(path)} for path in args.runs]
    speed = json.loads(args.speed.read_text())
    refuse_mixed(runs, speed)
    groups = by_count(runs)
    default = speed["settings"]["latent"]["candidates_per_result"]
    if default not in groups:
        raise SystemExit(f"--runs: no run at the checkpoint's default of {default} candidates per result")
    rows = []
    for count, group in groups.items():
        kinds = pooled(group)
        each = [row for kind, row in kinds.items() if kind != "all hard"]
        rows.append(
            {
                "candidates": count,
                "made": count * group[0]["settings"]["num_images_per_prompt"],
                "kinds": kinds,
                "precision_mean_of_kinds": sum(row["batch_precision"] for row in each) / len(each),
                "seconds_per_edit": sum(row["seconds_per_edit"] * row["edits"] for row in each)
                / sum(row["edits"] for row in each),
            }
        )
    base = next(row["seconds_per_edit"] for row in rows if row["candidates"] == default)
    for row in rows:
        row["faster_than_pixel"] = speed["latent_speedup_per_image"] * base / row["seconds_per_edit"]
    first = groups[default]
    results = provenance("candidates_cost.py") | {
        "runs": [{key: run[key] for key in ("file", "commit", "machine", "date", "set")} for run in runs],
        "sets": sorted(run["set"] for run in first),
        "edits_per_kind": sum(run["edits_per_kind"] for run in first),
        "speed_file": str(args.speed),
        "speed_at_defaults": speed["latent_speedup_per_image"],
        "rows": rows,
    }
    write_results(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
