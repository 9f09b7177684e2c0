"""The shapes world: renderer, captions, tokenizer and the pixel judge."""

from __future__ import annotations

import numpy as np
import pytest

from blended_pipeline.shapes.edits import (
    HARD_KINDS,
    background_case,
    edit_case,
    extend_case,
    hard_edit_case,
    hard_edit_cases,
    ideal_edit,
    scribble_case,
)
from blended_pipeline.shapes.judge import colour_labels, judge, parse_prompt
from blended_pipeline.shapes.tokenizer import build_tokenizer, unknown_words
from blended_pipeline.shapes.world import COLOURS, PALETTE, SHAPES, VOCABULARY, random_scene, render


def test_scenes_follow_the_rules():
    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = random_scene(rng, 32)
        image = render(scene, 32)
        assert image.shape == (32, 32, 3) and 1 <= len(scene.shapes) <= 2
        assert len(scene.background) in (1, 2)
        for shape in scene.shapes:
            assert shape.colour not in scene.background
            assert 0.30 * 32 <= shape.size <= 0.45 * 32
        colours = {tuple(p) for p in image.reshape(-1, 3)}
        assert colours <= {PALETTE[c] for c in COLOURS}
        assert scene.caption().endswith("background") and scene.caption().startswith("a ")


def test_rendering_is_reproducible():
    a = render(random_scene(np.random.default_rng(7), 32), 32)
    b = render(random_scene(np.random.default_rng(7), 32), 32)
    assert np.array_equal(a, b)


def test_tokenizer_spells_every_word_as_one_token_and_tolerates_others():
    tokenizer = build_tokenizer(VOCABULARY)
    for word in VOCABULARY:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1
    ids = tokenizer("a zebra circle").input_ids
    assert len(ids) > 5  # unknown words fall back to letters
    assert unknown_words("A zebra circle, please", VOCABULARY) == ["zebra", "please"]


@pytest.mark.parametrize("resolution", [32, 64])
def test_judge_accepts_ideal_edits(resolution):
    rng = np.random.default_rng(1)
    for _ in range(300):
        case = edit_case(rng, resolution)
        verdict = judge(ideal_edit(case, rng), case.mask, case.prompt)
        assert verdict.ok, (case.prompt, verdict.reason)


@pytest.mark.parametrize("kind", HARD_KINDS)
def test_ideal_edits_fit_the_masks_of_hard_edits(kind):
    rng = np.random.default_rng(2)
    for _ in range(100):
        case = hard_edit_case(rng, 32, kind)
        verdict = judge(ideal_edit(case, rng), case.mask, case.prompt)
        assert verdict.ok, (kind, case.box, verdict.reason)


def test_judge_refuses_wrong_shapes_colours_and_untouched_images():
    rng = np.random.default_rng(2)
    for _ in range(300):
        case = edit_case(rng, 32)
        other_shape = str(rng.choice([s for s in SHAPES if s != case.shape]))
        other_colour = str(rng.choice([c for c in COLOURS if c != case.colour]))
        assert not judge(ideal_edit(case, rng, shape=other_shape), case.mask, case.prompt).ok
        assert not judge(ideal_edit(case, rng, colour=other_colour), case.mask, case.prompt).ok
        assert not judge(case.image, case.mask, case.prompt).ok


def test_judge_refuses_a_blob_too_small():
    rng = np.random.default_rng(3)
    case = edit_case(rng, 32)
    image = case.image.copy()
    left, top = case.box[:2]
    image[top + 2 : top + 5, left + 2 : left + 5] = PALETTE[case.colour]
    assert "too small" in judge(image, case.mask, case.prompt).reason


def test_judge_background_prompts():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:] = PALETTE["blue"]
    mask = np.ones((32, 32), bool)
    mask[10:20, 10:20] = False
    image[10:20, 10:20] = PALETTE["red"]
    assert judge(image, mask, "a blue background").ok
    assert not judge(image, mask, "a green background").ok
    with pytest.raises(ValueError, match="judge understands"):
        parse_prompt("a zebra")


def test_scene_judge_accepts_renderings_and_refuses_noise_and_blanks():
    from blended_pipeline.shapes.judge import judge_scene

    rng = np.random.default_rng(4)
    verdicts = [judge_scene(render(random_scene(rng, 32), 32)) for _ in range(300)]
    # Two shapes of one colour that overlap can merge into one large object: rare, and refused.
    assert np.mean([v.ok for v in verdicts]) >= 0.95
    assert all(judge_scene(render(random_scene(rng, 32, num_shapes=1), 32)).ok for _ in range(100))
    noise = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    assert not judge_scene(noise).ok
    blank = np.zeros((32, 32, 3), np.uint8)
    blank[:] = PALETTE["red"]
    assert not judge_scene(blank).ok


def test_application_cases_ask_for_what_is_not_there():
    rng = np.random.default_rng(5)
    for _ in range(50):
        background = background_case(rng, 32)
        assert background.keep.any() and not background.keep.all()
        assert background.prompt == f"a {background.colour} background"
        assert not (colour_labels(background.image) == COLOURS.index(background.colour)).any()
        scribble = scribble_case(rng, 32)
        opaque = scribble.strokes[..., 3] == 255
        assert 0.02 < opaque.mean() < 0.3 and np.all(scribble.strokes[opaque, :3] == PALETTE[scribble.colour])
        assert not (colour_labels(scribble.image) == COLOURS.index(scribble.colour)).any()
        extend = extend_case(rng, 32, 8)
        assert sorted(extend.padding) == [0, 0, 0, 8] and extend.image.shape[:2] in ((24, 32), (32, 24))
        left, top, right, bottom = extend.padding
        assert np.array_equal(extend.scene[top : 32 - bottom, left : 32 - right], extend.image)
        parse_prompt(extend.prompt)


def test_hard_edit_kinds_have_the_masks_they_promise():
    cases = hard_edit_cases(11, 20, 32)
    assert list(cases) == list(HARD_KINDS)
    for case in cases["small"]:
        left, top, right, bottom = case.box
        assert right - left == bottom - top and 11 <= right - left <= 15
        assert case.mask.sum() == (right - left) ** 2
    for case in cases["wide"]:
        left, top, right, bottom = case.box
        assert 1.4 <= (right - left) / (bottom - top) <= 1.6
        assert case.mask.sum() == (right - left) * (bottom - top)
    for case in cases["ellipse"]:
        left, top, right, bottom = case.box
        assert 15 <= right - left <= 20
        assert 0.7 < case.mask[top:bottom, left:right].mean() < 0.85  # an ellipse fills pi/4 of its box
        assert not case.mask[top, left] and not case.mask[bottom - 1, right - 1]
    for case in cases["replace"]:
        left, top, right, bottom = case.box
        centre = case.image[(top + bottom) // 2, (left + right) // 2]
        corner_colours = {tuple(case.image[y, x]) for y in (0, 31) for x in (0, 31)}
        assert tuple(centre) not in corner_colours  # centred on an object, not on the background
        assert right - left >= 16


def test_unknown_kind_of_hard_edit_is_refused():
    with pytest.raises(ValueError, match="unknown kind of hard edit 'tiny'"):
        hard_edit_case(np.random.default_rng(0), 32, "tiny")
