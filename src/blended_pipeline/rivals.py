"""Rival prompts: what a result could be taken for instead of what was asked.

A small CLIP reads a region's colour far better than its outline, so a blob of the asked colour can outrank the
asked shape. Naming the things the asked one is confused with ("circle,square,triangle") lets the ranking mark
down a result that matches the prompt with its shape swapped ("a green circle" for "a green triangle") as well as
the prompt itself. No torch here: the front ends check the groups before the heavy imports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

RivalGroups = tuple[tuple[str, ...], ...]


def rival_groups(text: str, name: str = "rank_rivals") -> RivalGroups:
    """The groups of ``text``: groups separated by ";", the names of a group by ","; "" gives none.

    Raises ``ValueError`` (calling the setting ``name``) for a group of fewer than two names distinct in any case,
    or an empty name."""
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a string of name groups, e.g. 'circle,square,triangle', got {text!r}")
    groups = []
    for part in text.split(";") if text.strip() else []:
        names = tuple(word.strip() for word in part.split(","))
        if any(not word for word in names) or len({word.casefold() for word in names}) < 2:
            raise ValueError(
                f"{name} {text!r}: each group needs two or more distinct names separated by commas, groups "
                "separated by semicolons, e.g. 'circle,square,triangle;cat,dog'"
            )
        groups.append(names)
    return tuple(groups)


def rival_prompts(prompt: str, groups: RivalGroups) -> list[str]:
    """For each group, the first of its names that ``prompt`` holds as a whole word (any case): ``prompt`` with that
    name replaced by each other name of the group; empty where it holds no name of any group."""
    rivals = []
    for group in groups:
        for name in group:
            pattern = re.compile(rf"\b{re.escape(name)}\b", re.IGNORECASE)
            if pattern.search(prompt):
                rivals += [pattern.sub(lambda _, other=other: other, prompt) for other in group if other != name]
                break
    return rivals


def rival_rounds(prompts: Sequence[str], groups: RivalGroups) -> tuple[list[list[str]], list[bool]]:
    """The rivals of each of ``prompts`` as rounds of one prompt per row, so that each round is scored in one pass,
    and whether each row has any. A row with fewer rivals than the most repeats its first; a row with none holds
    its own prompt (its rounds are not counted)."""
    rivals = [rival_prompts(prompt, groups) for prompt in prompts]
    count = max((len(r) for r in rivals), default=0)
    rounds = [
        [r[i] if i < len(r) else (r[0] if r else p) for p, r in zip(prompts, rivals, strict=True)] for i in range(count)
    ]
    return rounds, [bool(r) for r in rivals]
