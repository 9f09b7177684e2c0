"""The shapes demo's wall time, as a user sees it: the whole ``blended-edit --demo`` command, runs alternating.

    python benchmarks/demo_speed.py --out docs/figures/demo_speed
    python benchmarks/demo_speed.py --repeats 1 --variants "now=" --out /tmp/demo_speed      # one run

Each variant is a set of extra options; by default the demo as it runs now and as it ran before the shapes
checkpoint named its own steps (``--steps 100``, the paper's). Python start, model loading, the edit and the
written files are all in the time.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

from benchmarks.common import BLENDED_EDIT, heading, provenance, write_results

VARIANTS = "pixel=;latent=--latent"


def run_demo(options: list[str]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        command = [*BLENDED_EDIT, "--demo", "--out", f"{folder}/demo", *options]
        began = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=VARIANTS, help="NAME=OPTIONS pairs separated by ';'")
    args = parser.parse_args()
    variants = dict(pair.split("=", 1) for pair in args.variants.split(";"))
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, options in variants.items():
            seconds[name].append(run_demo(shlex.split(options)))
            print(f"{name}: {seconds[name][-1]:.1f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    first = next(iter(variants))
    results = {**provenance("demo_speed.py"), "variants": variants, "seconds": seconds, "median_seconds": medians}
    lines = [
        heading(results),
        "",
        f"| blended-edit --demo | options | median s ({args.repeats} runs) | runs (s) | speed-up over {first} |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {name} | `{variants[name] or '(none)'}` | {medians[name]:.1f} | "
        f"{', '.join(f'{v:.1f}' for v in seconds[name])} | {medians[first] / medians[name]:.2f}x |"
        for name in variants
    ]
    write_results(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
