"""Every headline figure of README.md and docs/, made again on the shipped checkpoints and defaults: one command.

    python benchmarks/headline.py --authors-dir /tmp/blended-diffusion                  # all; about 70 min here
    python benchmarks/headline.py --only demo_speed,cli_startup                         # some of them
    python benchmarks/headline.py --dry-run --authors-dir X                             # the commands, not run

Each figure is its script's own run, in a fresh process, one after another (never two at once: most of them
time something), writing ``docs/figures/NAME.{json,md}`` (``--out-dir`` elsewhere). Before each script the
command waits until the machine is idle again (the previous script's load fades in about a minute), so that each
results file's recorded load is the machine's, not the last script's. ``headline.{json,md}`` records each
script's command, exit status and duration; a script that fails is recorded and the rest still run, and the
command then exits 1. ``vs_authors`` runs the authors' code from a
checkout of omriav/blended-diffusion (``--authors-dir``), which also needs ``pip install kornia ftfy``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

from benchmarks.common import QUIET_LOAD, heading, provenance, write_results

FIGURES: dict[str, tuple[str, ...]] = {  # name under docs/figures: the script and its arguments
    "cli_startup": ("cli_startup.py",),
    "demo_speed": ("demo_speed.py",),
    "vs_authors": ("vs_authors.py",),  # and --authors-dir
    "batch": ("batch.py",),
    "large_image": ("large_image.py",),
    "families_vs_diffusers": ("families_vs_diffusers.py", "--repeats", "7"),
    "model_sizes": ("model_sizes.py",),
    "latent_vs_pixel": ("latent_vs_pixel.py", "--edits", "32", "--reconstruction-edits", "8"),
    "latent_vs_diffusers": ("latent_vs_diffusers.py", "--set", "heldout", "--edits", "24"),
    "tradeoffs": ("tradeoffs.py", "--headline"),
    "shapes_targets": ("shapes_targets.py", "--edits", "16"),
    "hard_edits": ("hard_edits.py", "--set", "heldout", "--edits", "24"),
    "hard_edits_latent": ("hard_edits.py", "--model", "latent", "--set", "heldout", "--edits", "96"),
    "latent_ceiling": ("latent_ceiling.py",),
    "applications": ("applications.py", "--edits", "8"),
}
"""In the order they run: the timing comparisons first."""


def command_for(name: str, out_dir: Path, authors_dir: Path | None) -> list[str]:
    script, *arguments = FIGURES[name]
    if name == "vs_authors":
        arguments += ["--authors-dir", str(authors_dir.resolve())]
    return [sys.executable, f"benchmarks/{script}", *arguments, "--out", str(out_dir / name)]


def wait_until_quiet(most_seconds: float = 600.0) -> float:
    """The one-minute load average once it is at most ``QUIET_LOAD`` (or after ``most_seconds``, whatever it is)."""
    began = time.monotonic()
    while os.getloadavg()[0] > QUIET_LOAD and time.monotonic() - began < most_seconds:
        time.sleep(10)
    return os.getloadavg()[0]


def markdown(results: dict) -> str:
    lines = [
        heading(results),
        "",
        "| figure | command | exit status | minutes |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {run['figure']} | `{run['command']}` | {run['exit_status']} | {run['seconds'] / 60:.1f} |"
        for run in results["runs"]
    ]
    lines += ["", f"All: {sum(run['seconds'] for run in results['runs']) / 60:.0f} minutes."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors-dir", type=Path, help="a checkout of omriav/blended-diffusion (for vs_authors)")
    parser.add_argument("--only", type=lambda text: text.split(","), default=list(FIGURES), help="comma-separated")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/figures"))
    parser.add_argument("--dry-run", action="store_true", help="print the commands; run nothing")
    args = parser.parse_args()
    unknown = sorted(set(args.only) - set(FIGURES))
    if unknown:
        parser.error(f"--only: unknown {unknown}; choose from {', '.join(FIGURES)}")
    if "vs_authors" in args.only and not (args.authors_dir and (args.authors_dir / "optimization").is_dir()):
        parser.error("vs_authors needs --authors-dir, a checkout of omriav/blended-diffusion (or leave it out: --only)")
    root = Path(__file__).resolve().parents[1]
    out_dir = args.out_dir.resolve()  # the caller's path; the scripts run from the repository's root
    out_dir = out_dir.relative_to(root) if out_dir.is_relative_to(root) else out_dir
    names = [name for name in FIGURES if name in args.only]
    commands = {name: command_for(name, out_dir, args.authors_dir) for name in names}
    if args.dry_run:
        print("\n".join(" ".join(command[1:]) for command in commands.values()))
        return
    os.chdir(root)
    results = {**provenance("headline.py"), "runs": []}
    for name, command in commands.items():
        load = wait_until_quiet()
        began = time.perf_counter()
        status = subprocess.run(command).returncode
        results["runs"].append(
            {
                "figure": name,
                "command": "python " + " ".join(command[1:]),
                "exit_status": status,
                "load_before": load,
                "seconds": time.perf_counter() - began,
            }
        )
        write_results(out_dir / "headline", results, markdown(results))
    sys.exit(int(any(run["exit_status"] for run in results["runs"])))


if __name__ == "__main__":
    main()
