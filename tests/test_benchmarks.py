"""The benchmark scripts run end to end in their --smoke setting, so they cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
        [sys.executable, str(ROOT / "benchmarks" / "paper_config.py"), "--smoke", "--out", str(prefix)],
        check=True,
        capture_output=True,
    )
    results = json.loads(Path(f"{prefix}.json").read_text())
    assert results["smoke"] and [r["precision"] for r in results["runs"]] == ["no", "bf16"]
    assert all(r["seconds_per_image"] > 0 and r["peak_memory_mb"] > 0 for r in results["runs"])
