"""Every Python snippet in the README and docs runs as written, on the shipped shapes model with few steps.

A page's snippets run in order in one namespace (as a reader would paste them), from a folder that has the
repository's ``examples/``. A snippet whose first line starts with ``# needs:`` (downloads, a GPU) is skipped.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pytest

from blended_pipeline import BlendedDiffusionPipeline

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FEW = {"num_inference_steps": 4, "num_augmentations": 2}


def snippets(page: Path) -> list[str]:
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)
    return [block for block in blocks if not block.startswith("# needs:")]


RUNNABLE = [page for page in PAGES if snippets(page)]


def test_the_pages_with_snippets_are_the_expected_ones():
    assert {page.name for page in RUNNABLE} == {"README.md", "api.md", "applications.md"}


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda page: page.name)
def test_snippets_run_as_written(page, tmp_path, monkeypatch):
    call = BlendedDiffusionPipeline.__call__

    @functools.wraps(call)
    def few_steps(self, *args, **kwargs):
        return call(self, *args, **{**kwargs, **FEW})

    monkeypatch.setattr(BlendedDiffusionPipeline, "__call__", few_steps)
    os.symlink(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for index, code in enumerate(snippets(page)):
        try:
            exec(compile(code, f"{page.name} snippet {index + 1}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"{page.name} snippet {index + 1} fails: {error!r}\n{code}") from error
