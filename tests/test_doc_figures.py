"""Every measured figure in README.md and docs/ comes from a results file cited beside it.

A figure is a number with a unit a measurement gives: a percentage, a time, a ratio, a size in bytes or decibels.
Each must appear, as written, in a results file under ``docs/figures/`` that the same section (the text under one
heading) cites by name. ``docs/research-log.md`` is history and is not read; figures that are not ours to
measure (the paper's, a format's) or that state a setting rather than a result are listed in ``NOT_MEASURED``,
each with its reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FIGURES = ROOT / "docs" / "figures"
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "research-log.md")]

FIGURE = re.compile(
    r"(?<![\w.,/])(?<!\d-)(\d+(?:,\d{3})*(?:\.\d+)?)\s?"
    r"(%|x(?![\w])|s(?![\w])|ms\b|min\b|minutes?\b|h\b|KB\b|MB\b|MiB\b|GB\b|GiB\b|dB\b)"
)
"""A measured figure: a number and its unit (the second number of a range such as 50-60% is a setting's bounds)."""
CITED = re.compile(r"figures/([\w.-]+?)(?:\.md|\.json|\.png)?(?=[`)\s,;:]|$)", re.M)
HEADING = re.compile(r"^#{1,6} ", re.M)

NOT_MEASURED: dict[str, set[str]] = {
    # page: the figures in it that are not results of ours, each with why
    "adm.md": {
        "30 s",  # the paper's reported time per image (Avrahami et al. 2022, section 5)
        "27 s",  # Blended Latent Diffusion's reported time on an A10 (Avrahami et al. 2023)
        "23 s",  # the same paper, in batches
    },
    "api.md": {
        "39%",  # the schedule's arithmetic: sqrt(alphas_cumprod) of the cosine schedule at t = 740
        "6%",  # the same for the linear schedule
    },
    "applications.md": {
        "30 s",  # the paper's reported time per image on a GPU (Avrahami et al. 2022)
        "29%",  # the schedule's arithmetic: sqrt(alphas_cumprod) of the linear schedule at strength 0.5
        "32%",  # the same for the cosine schedule at 0.8
        "71%",  # ... at 0.5
        "46%",  # ... at 0.7
    },
    "method.md": {
        "10%",  # an augmentation's setting (translation up to 10% of the side)
    },
    "shapes.md": {
        "40%",  # the judge's threshold (a blob at least 40% of the box's side), and a caption share in training
        "2%",  # the judge's threshold (a blob at least 2% of the image)
        "60%",  # the judge's threshold for a background
        "95%",  # the share of rendered scenes judge_scene must pass in tests/test_shapes.py
        "10%",  # a caption share in training (empty captions)
        "39%",  # the schedule's arithmetic: sqrt(alphas_cumprod) of the cosine schedule at strength 0.75
        "6%",  # the same for the linear schedule
        "17%",  # the cosine schedule at strength 0.9
        "15 MB",  # the latent checkpoint's size limit (issue 40; tests/test_training.py checks it)
    },
    "ui.md": {
        "8x",  # how much larger the page shows the 32 px demo image to paint on: a display setting
        "64 MB",  # the page's upload limit: a setting
    },
}


def sections(page: Path) -> list[str]:
    """The page's text cut at each heading, code blocks dropped (commands and outputs are not figures)."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return HEADING.split(text)


def cited_results(section: str, figures: Path) -> str:
    """The tables of every results file the section names (``NAME.md``: what a reader is shown)."""
    texts = []
    for name in set(CITED.findall(section)):
        table = figures / f"{name.removesuffix('.md').removesuffix('.json')}.md"
        texts += [table.read_text()] if table.exists() else []
    return "\n".join(texts)


def found_in(number: str, unit: str, sources: str) -> bool:
    """Whether the figure is written in ``sources`` as itself: a percentage or ratio with its sign, any other number
    whole (not the start of a longer number, a date's part or a commit's digits)."""
    numbers = {number, number.replace(",", "")}
    if unit in ("%", "x"):
        return any(re.search(rf"(?<![\w.]){re.escape(n + unit)}", sources) for n in numbers)
    return any(re.search(rf"(?<![\w.-]){re.escape(n)}(?![\d]|\.\d|-\d)", sources) for n in numbers)


def unsourced(page: Path, figures: Path = FIGURES) -> list[str]:
    missing = []
    allowed = NOT_MEASURED.get(page.name, set())
    for section in sections(page):
        sources = cited_results(section, figures)
        for match in FIGURE.finditer(section):
            number, unit = match.groups()
            written = f"{number}{unit}" if unit in "%x" else f"{number} {unit}"
            if written in allowed or match.group(0) in allowed:
                continue
            if not found_in(number, unit, sources):
                title = section.splitlines()[0][:60] if section else ""
                missing.append(f"{page.name} [{title}]: {match.group(0)}")
    return missing


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_figure_has_a_results_file_beside_it(page):
    assert unsourced(page) == []


def test_the_research_log_is_marked_as_history():
    log = (ROOT / "docs" / "research-log.md").read_text()
    assert "history" in log.split("\n\n", 2)[1].lower()


def test_a_figure_is_sourced_only_by_a_file_its_section_cites(tmp_path):
    (tmp_path / "speed.md").write_text("| demo | 12.5 | 97% |\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Speed\n\nIt takes 12.5 s ([table](figures/speed.md)); 97% of edits succeed, 3.2x faster.\n\n"
        "## Elsewhere\n\nAgain 12.5 s, with no results file named.\n"
    )
    assert unsourced(page, tmp_path) == ["page.md [Speed]: 3.2x", "page.md [Elsewhere]: 12.5 s"]


def test_a_figure_must_be_written_as_its_file_writes_it(tmp_path):
    (tmp_path / "run.md").write_text("date: 2026-12-07; commit 8690e80\n\n| 50 steps | 60.2 | 12.5 |\n")
    page = tmp_path / "page.md"
    page.write_text("# Run\n\n([table](figures/run.md)): 12% and 80 s, 60% and 12.5 s, 50 s.\n")
    assert unsourced(page, tmp_path) == ["page.md [Run]: 12%", "page.md [Run]: 80 s", "page.md [Run]: 60%"]


def test_each_listed_exception_is_on_its_page():
    for name, allowed in NOT_MEASURED.items():
        text = "".join(sections(ROOT / "docs" / name))
        written = {f"{n}{u}" if u in "%x" else f"{n} {u}" for n, u in FIGURE.findall(text)}
        assert allowed <= written, f"{name}: {sorted(allowed - written)} listed but not on the page"


def test_every_headline_figure_is_shown_in_the_docs():
    from benchmarks.headline import FIGURES as HEADLINE_FIGURES

    cited = {name for page in PAGES for section in sections(page) for name in CITED.findall(section)}
    assert {name for name in HEADLINE_FIGURES if name not in cited} == set()
