"""What editing a small region of a large image costs: `blended-edit`'s peak memory and wall time by image size.

    python benchmarks/large_image.py --out docs/figures/large_image

Each size is one fresh `blended-edit` process on the shipped pixel model (4 steps, 2 results) editing a 48-pixel
square of a smooth PNG (a few KB on disk); its peak resident set is the kernel's account of that process
(``wait4``). The edit itself runs on a crop at the model's resolution, so what grows with the image is reading
it, the results pasted back and writing them.
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

from benchmarks.common import BLENDED_EDIT, heading, provenance, write_results

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


def measured_edit(image: Path, mask: Path, out: Path, side: int) -> dict:
    """One `blended-edit` run: its wall seconds and peak resident set (MiB); fails loudly if the edit failed."""
    command = [
        *BLENDED_EDIT,
        *("--image", str(image), "--mask", str(mask), "--prompt", "a red square", "--out", str(out)),
        *("--steps", "4", "--samples", str(RESULTS), "--max-pixels", str(side * side), "--overwrite"),
    ]
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"blended-edit failed on the {side}x{side} image: {process.stderr.read().decode()}")
    return {"seconds": seconds, "peak_memory_mib": usage.ru_maxrss / 1024}


def markdown(results: dict) -> str:
    lines = [
        heading(results),
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
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for side in args.sides:
            image, mask = write_inputs(side, Path(folder))
            run = measured_edit(image, mask, Path(folder) / f"out-{side}.png", side)
            runs.append({"side": side, "png_kb": image.stat().st_size / 1024, **run})
            print(runs[-1], flush=True)
    results = {**provenance("large_image.py"), "region": REGION, "results": RESULTS, "steps": 4, "runs": runs}
    write_results(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
