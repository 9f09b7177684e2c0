"""What editing a small region of a large image costs: `blended-edit`'s peak memory and wall time by image size.

    python benchmarks/large_image.py --out docs/figures/large_image

Each size is one fresh `blended-edit` process on the shipped pixel model (4 steps, 2 results) editing a 48-pixel
square of a smooth PNG (a few KB on disk); its peak resident set is what the kernel counts for that process from
its start (``VmHWM``, which it reports as it ends: a parent's ``wait4`` figure would include the parent's own
memory, which a child inherits at fork). The edit itself runs on a crop at the model's resolution, so what grows
with the image is reading it, the results pasted back and writing them.

``--source DIR`` measures another checkout's source (its ``src``) with this script, for a comparison.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the shared code is benchmarks.*

from benchmarks.common import commit, heading, provenance, write_results

SIDES = (1000, 3000, 6000, 12000)
REGION = 48
RESULTS = 2


def write_inputs(side: int, folder: Path) -> tuple[Path, Path]:
    """A smooth ``side``-square PNG and a mask of a ``REGION``-pixel square near its centre."""
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], np.full((side, side), 128.0)), -1)
    image_path, mask_path = folder / f"image-{side}.png", folder / f"mask-{side}.png"
    PIL.Image.fromarray(image.astype(np.uint8)).save(image_path)
    mask = PIL.Image.new("L", (side, side), 0)
    mask.paste(255, (side // 2, side // 2, side // 2 + REGION, side // 2 + REGION))
    mask.save(mask_path)
    return image_path, mask_path


REPORTING_PEAK = """
import sys
from pathlib import Path
from blended_pipeline import cli
try:
    code = cli.main(sys.argv[1:])
finally:
    peak = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    print("peak", int(peak.split()[1]), file=sys.stderr)
sys.exit(code)
"""
"""``blended-edit`` that says its peak resident set (KiB) on its last stderr line."""


def measured_edit(image: Path, mask: Path, out: Path, side: int, source: Path | None) -> dict:
    """One `blended-edit` run (of ``source``'s package, if given): its wall seconds and peak resident set (MiB);
    fails loudly if the edit failed."""
    command = [
        sys.executable,
        "-c",
        REPORTING_PEAK,
        *("--image", str(image), "--mask", str(mask), "--prompt", "a red square", "--out", str(out)),
        *("--steps", "4", "--samples", str(RESULTS), "--max-pixels", str(side * side), "--overwrite"),
    ]
    began = time.perf_counter()
    environment = {**os.environ, **({"PYTHONPATH": str(source.resolve() / "src")} if source else {})}
    process = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False, env=environment
    )
    seconds = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"blended-edit failed on the {side}x{side} image: {process.stderr}")
    return {"seconds": seconds, "peak_memory_mib": int(process.stderr.split()[-1]) / 1024}


def markdown(results: dict) -> str:
    lines = [
        heading(results) + (f"; the package measured is commit {results['source']}'s" if "source" in results else ""),
        "",
        "| image | pixels | PNG size KB | peak memory MiB | of which one RGB copy MiB | wall s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in results["runs"]:
        side = run["side"]
        lines.append(
            f"| {side}x{side} | {side * side:,} | {run['png_kb']:.0f} | {run['peak_memory_mib']:.0f} | "
            f"{side * side * 3 / 2**20:.0f} | {run['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output path prefix (.json, .md)")
    parser.add_argument("--sides", type=int, nargs="+", default=list(SIDES))
    parser.add_argument("--source", type=Path, help="a checkout whose src/ is run in place of this one's")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for side in args.sides:
            image, mask = write_inputs(side, Path(folder))
            run = measured_edit(image, mask, Path(folder) / f"out-{side}.png", side, args.source)
            runs.append({"side": side, "png_kb": image.stat().st_size / 1024, **run})
            print(runs[-1], flush=True)
    measured = {"source": commit(args.source)} if args.source else {}
    settings = {"region": REGION, "results": RESULTS, "steps": 4}
    results = {**provenance("large_image.py"), **measured, **settings, "runs": runs}
    write_results(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
