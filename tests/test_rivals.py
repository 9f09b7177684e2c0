"""Rival prompts (``rivals``): the groups as written, the prompts a prompt is rivalled by, and the rounds the
ranking scores."""

from __future__ import annotations

import pytest

from blended_pipeline.rivals import rival_groups, rival_prompts, rival_rounds

SHAPES = rival_groups("circle,square,triangle")


def test_groups_are_read_as_written_and_none_from_an_empty_string():
    assert rival_groups("circle, square,triangle;cat,dog") == (("circle", "square", "triangle"), ("cat", "dog"))
    assert rival_groups("") == rival_groups("  ") == ()


@pytest.mark.parametrize("text", ["cat", "cat,cat", "Cat,cat", "cat,,dog", "cat,dog;", ";cat,dog", 3])
def test_a_group_needs_two_distinct_names(text):
    with pytest.raises(ValueError, match="rank_rivals .*(two or more distinct names|must be a string)"):
        rival_groups(text)


def test_a_prompt_is_rivalled_by_each_other_name_of_a_group_it_names_as_a_word():
    assert rival_prompts("a green triangle", SHAPES) == ["a green circle", "a green square"]
    assert rival_prompts("A Square box", SHAPES) == ["A circle box", "A triangle box"]
    assert rival_prompts("two triangles", SHAPES) == []  # a whole word only
    assert rival_prompts("a cat", rival_groups(r"cat,d\1og")) == [r"a d\1og"]  # names are not patterns
    assert rival_prompts("a dog by a triangle", rival_groups("cat,dog;square,triangle")) == [
        "a cat by a triangle",
        "a dog by a square",
    ]


def test_rounds_hold_one_rival_per_row_and_mark_the_rows_without():
    groups = rival_groups("circle,square,triangle;cat,dog")
    rounds, present = rival_rounds(["a red circle", "a cat", "a house"], groups)
    assert rounds == [["a red square", "a dog", "a house"], ["a red triangle", "a dog", "a house"]]
    assert present == [True, True, False]
    assert rival_rounds(["a house"], groups) == ([], [False])
