"""How long ``blended-edit`` takes to answer before any model work: --help, a mistyped flag, a missing file.

    python benchmarks/cli_startup.py --out docs/figures/cli_startup

Each command runs in a fresh interpreter (as a user's shell starts it), ``--repeats`` times; the table gives the
median and the slowest wall time. Target: under 1 s each (the CLI imports torch and diffusers only after its
arguments and files are checked).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

from benchmarks.common import BLENDED_EDIT, heading, provenance, write_results

COMMANDS = {
    "--help": ["--help"],
    "a mistyped flag": ["--imagee", "in.png", "--out", "out.png"],
    "a missing image file": ["--image", "missing.png", "--mask", "missing.png", "--prompt", "a", "--out", "o.png"],
}
TARGET_SECONDS = 1.0


def wall_seconds(arguments: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run([*BLENDED_EDIT, *arguments], capture_output=True, check=False)
    return time.perf_counter() - began


def markdown(results: dict) -> str:
    lines = [
        heading(results),
        "",
        f"| blended-edit with | median s ({results['repeats']} runs) | slowest s | target |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {name} | {run['median_seconds']:.2f} | {run['max_seconds']:.2f} | < {TARGET_SECONDS:g} s |"
        for name, run in results["runs"].items()
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    runs = {}
    for name, arguments in COMMANDS.items():
        seconds = [wall_seconds(arguments) for _ in range(args.repeats)]
        runs[name] = {"median_seconds": statistics.median(seconds), "max_seconds": max(seconds)}
    results = {**provenance("cli_startup.py"), "repeats": args.repeats, "runs": runs}
    write_results(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
