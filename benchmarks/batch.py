"""Edits per second of ``blended-edit-batch`` with 1 and 2 processes, against one ``blended-edit`` call per edit.

    python benchmarks/batch.py --out docs/figures/batch                 # 8 shapes edits, 25-step schedule
    python benchmarks/batch.py --smoke --out /tmp/batch                 # checks the script, not the speed

All three run the same manifest (shapes edits at the CLI's settings but ``--steps``) in fresh processes, one
after another in one run: one process with every core's threads; processes with one thread each under
``accelerate launch --multi_gpu`` (on a CPU-only machine that runs them on gloo); and the CLI once per edit,
which loads the model every time. Wall time counts everything a user waits for, model loading included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

import numpy as np
import PIL.Image

from benchmarks.common import BLENDED_EDIT, heading, provenance, write_results
from blended_pipeline.shapes.edits import edit_cases


def write_manifest(folder: Path, count: int, seed: int) -> Path:
    """``count`` shapes edits (image, mask, prompt) as files and a JSON Lines manifest."""
    lines = []
    for i, case in enumerate(edit_cases(seed, count, 32)):
        PIL.Image.fromarray(case.image).save(folder / f"image{i}.png")
        PIL.Image.fromarray(case.mask.astype(np.uint8) * 255).save(folder / f"mask{i}.png")
        lines.append({"id": f"edit{i}", "image": f"image{i}.png", "mask": f"mask{i}.png", "prompt": case.prompt})
    manifest = folder / "edits.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


def timed(command: list[str], threads: int) -> float:
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    began = time.perf_counter()
    subprocess.run(command, env=environment, check=True, capture_output=True)
    return time.perf_counter() - began


def run(args: argparse.Namespace) -> dict:
    settings = ["--steps", str(args.steps), "--samples", str(args.samples)]
    if args.smoke:
        settings += ["--augmentations", "2"]
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        manifest = write_manifest(folder, args.edits, args.seed)
        batch = ["-m", "blended_pipeline.batch", str(manifest), "--quiet", *settings]
        for processes in (1, args.processes):
            out = folder / f"out-{processes}"
            launcher = [sys.executable]
            if processes > 1:
                launcher += ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes)]
            threads = max(1, cores // processes)
            seconds = timed([*launcher, *batch, "--out", str(out)], threads)
            summary = json.loads((out / "summary.json").read_text())
            assert summary["done"] == args.edits, summary
            rows.append(
                {
                    "how": f"blended-edit-batch, {processes} process(es) x {threads} thread(s)",
                    "processes": processes,
                    "seconds": seconds,
                    "edits_per_second": args.edits / seconds,
                    "per_process": summary["per_process"],
                }
            )
        began = time.perf_counter()
        for line in manifest.read_text().splitlines():
            edit = json.loads(line)
            out = folder / "cli" / f"{edit['id']}.png"
            out.parent.mkdir(exist_ok=True)
            command = [*BLENDED_EDIT, "--image", str(folder / edit["image"])]
            command += ["--mask", str(folder / edit["mask"]), "--prompt", edit["prompt"], "--out", str(out)]
            timed([*command, "--quiet", *settings], cores)
        seconds = time.perf_counter() - began
        rows.append(
            {
                "how": f"blended-edit once per edit, 1 process x {cores} thread(s)",
                "processes": 1,
                "seconds": seconds,
                "edits_per_second": args.edits / seconds,
            }
        )
    return {
        **provenance("batch.py"),
        "edits": args.edits,
        "steps": args.steps,
        "samples": args.samples,
        "smoke": args.smoke,
        "rows": rows,
        "speedup_of_one_process_over_cli_per_edit": rows[0]["edits_per_second"] / rows[-1]["edits_per_second"],
        "speedup_of_processes_over_one": rows[1]["edits_per_second"] / rows[0]["edits_per_second"],
    }


def markdown(results: dict) -> str:
    lines = [
        heading(results),
        "",
        f"{results['edits']} shapes edits, {results['steps']}-step schedule at the checkpoint's strength, "
        f"{results['samples']} results each; wall time includes starting Python and loading the model.",
        "",
        "| run | wall s | edits / s | editing s per process (load s) |",
        "| --- | --- | --- | --- |",
    ]
    for row in results["rows"]:
        per_process = ", ".join(f"{p['seconds']:.1f} ({p['load_seconds']:.1f})" for p in row.get("per_process", []))
        lines.append(f"| {row['how']} | {row['seconds']:.1f} | {row['edits_per_second']:.3f} | {per_process or '-'} |")
    lines += [
        "",
        "One long-lived process over one CLI call per edit: "
        f"{results['speedup_of_one_process_over_cli_per_edit']:.2f}x; {results['rows'][1]['processes']} processes "
        f"over one: {results['speedup_of_processes_over_one']:.2f}x.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="prefix of the .json and .md written")
    parser.add_argument("--edits", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="2 edits, 4 steps, 2 results, 2 views")
    args = parser.parse_args()
    if args.smoke:
        args.edits, args.steps, args.samples = 2, 4, 2
    results = run(args)
    write_results(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
