"""blended-ui: the layers-to-mask function, the page's handler (each application, each bad input), the page's
API through gradio_client, and an edit made in a real headless Chromium."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
from diffusers import DDPMScheduler

from blended_pipeline import ui
from examples.ui_screenshot import CHROMIUM_FLAGS, chromium_path, drive_page, served  # the page's own driver

ROOT = Path(__file__).parent.parent


def painted_layer(
    size: tuple[int, int], box: tuple[int, int, int, int], colour: tuple[int, int, int]
) -> PIL.Image.Image:
    layer = PIL.Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((*colour, 255), box)
    return layer


def test_strokes_are_the_union_of_the_layers_upper_colours_over_lower():
    size = (40, 24)
    lower = painted_layer(size, (2, 2, 20, 12), (255, 0, 0))
    upper = painted_layer(size, (10, 6, 30, 20), (0, 0, 255))
    strokes = ui.strokes_from_layers([lower, None, upper], size)
    mask = np.asarray(ui.mask_from_strokes(strokes)) > 127
    expected = np.zeros((24, 40), bool)
    expected[2:12, 2:20] = expected[6:20, 10:30] = True
    assert np.array_equal(mask, expected)
    rgba = np.asarray(strokes)
    assert tuple(rgba[4, 4]) == (255, 0, 0, 255) and tuple(rgba[8, 12]) == (0, 0, 255, 255)
    assert ui.strokes_from_layers([PIL.Image.new("RGBA", size)], size) is None
    with pytest.raises(ui.PageError, match="layer is 20x20"):
        ui.strokes_from_layers([PIL.Image.new("RGBA", (20, 20))], size)


def region_strokes(image: PIL.Image.Image) -> PIL.Image.Image:
    return painted_layer(image.size, (10, 6, 26, 18), (220, 30, 30))


def fast(**options) -> dict:
    return {"samples": 2, "steps": 4, "strength": 1.0, **options}


def test_edit_changes_only_the_painted_region_and_reports_each_step(pipe, image):
    steps = []
    edit = ui.edit_image(
        pipe, image, region_strokes(image), "a red ball", "edit", **fast(), on_step=lambda d, t: steps.append((d, t))
    )
    keep = np.asarray(edit.mask) == 0
    assert keep.sum() == 40 * 24 - 16 * 12
    for picture in edit.images:
        assert picture.size == image.size
        assert np.array_equal(np.asarray(picture)[keep], np.asarray(image)[keep])
    assert len(edit.images) == len(edit.scores) == 2 and edit.scores[0] >= edit.scores[1]
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert "4 of 4 steps" in edit.message


def test_background_keeps_the_painted_object(pipe, image):
    edit = ui.edit_image(pipe, image, region_strokes(image), "a blue background", "background", **fast())
    kept = np.zeros((24, 40), bool)
    kept[6:18, 10:26] = True
    assert np.array_equal(np.asarray(edit.mask) == 0, kept)
    assert np.array_equal(np.asarray(edit.images[0])[kept], np.asarray(image)[kept])


def test_scribble_takes_the_painted_colours_as_strokes(pipe, image):
    edit = ui.edit_image(pipe, image, region_strokes(image), "a red ball", "scribble", **fast(strength=0.5, steps=8))
    outside = np.asarray(edit.mask) == 0
    assert outside.any() and not outside[6:18, 10:26].any()  # the strokes' area (dilated) is edited
    assert np.array_equal(np.asarray(edit.images[0])[outside], np.asarray(image)[outside])


def test_extend_needs_no_painting_and_grows_the_canvas(pipe, image):
    edit = ui.edit_image(pipe, image, None, "a blue background", "extend", extend="0,0,8,4", **fast())
    assert edit.images[0].size == (48, 28)
    assert np.array_equal(np.asarray(edit.images[0])[:24, :40], np.asarray(image))


def test_scheduler_choice_swaps_the_pipeline_scheduler(pipe, image):
    ui.edit_image(pipe, image, region_strokes(image), "a red ball", **fast(), scheduler="ddim")
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"


def test_zoom_edits_a_small_painted_region_on_a_tighter_crop(pipe, image):
    small = painted_layer(image.size, (18, 10, 22, 14), (220, 30, 30))  # 4 pixels: a crop of 8, not the model's 16
    ui.edit_image(pipe, image, small, "a red ball", **fast())
    assert pipe.ranking.to_view is None
    edit = ui.edit_image(pipe, image, small, "a red ball", **fast(), zoom=0.5)
    assert pipe.ranking.to_view is not None and len(edit.images) == 2
    keep = np.asarray(edit.mask) == 0
    for picture in edit.images:
        assert np.array_equal(np.asarray(picture)[keep], np.asarray(image)[keep])


class NoWork:
    """A pipeline that fails the test if an edit starts: bad input must be refused before."""

    config = SimpleNamespace(default_strength=0.75, scribble_strength=0.5)
    scheduler = DDPMScheduler(num_train_timesteps=100)

    def __call__(self, **_):
        raise AssertionError("the edit started")


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(image=None), "no image"),
        (dict(strokes=None), "nothing is painted"),
        (dict(strokes="everything"), "covers the whole image"),
        (dict(strokes="everything", application="background"), "mask is empty"),
        (dict(prompt="  "), "prompt is empty"),
        (dict(prompt=None), "prompt must be a string"),
        (dict(image="huge"), "up to 4096 pixels a side"),
        (dict(image="tiny"), "at least 16"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(steps=500), "steps 500 is more than the 100 timesteps"),
        (dict(samples=2.5), "samples must be an integer"),
        (dict(strength=1.5), r"strength must be in \(0, 1\]"),
        (dict(mask_blur=-1), "mask blur must be >= 0"),
        (dict(zoom=1.5), r"zoom must be in \[0, 1\]"),
        (dict(scheduler="heun"), "scheduler must be one of"),
        (dict(application="paint"), "application 'paint'"),
        (dict(application="extend", extend="left"), "four whole numbers"),
        (dict(application="extend", extend="0,0,0,0"), "all four are 0"),
        (dict(application="extend", extend="0,0,500,0"), "extend"),
    ],
)
def test_bad_input_is_refused_with_a_message_before_any_work(image, change, message):
    arguments = dict(image=image, strokes=region_strokes(image), prompt="a red ball", application="edit")
    arguments.update(fast())
    arguments.update(change)
    if arguments["image"] == "huge":
        arguments["image"] = PIL.Image.new("RGB", (4097, 2048))
    elif arguments["image"] == "tiny":
        arguments["image"] = PIL.Image.new("RGB", (8, 8))
    if arguments["strokes"] == "everything":
        arguments["strokes"] = painted_layer(image.size, (0, 0, *image.size), (255, 0, 0))
    with pytest.raises(ui.PageError, match=message):
        ui.edit_image(NoWork(), **arguments)


def test_editor_value_gives_the_background_and_the_flattened_strokes(image):
    strokes = region_strokes(image)
    background, flattened = ui.editor_inputs({"background": image, "layers": [strokes], "composite": None})
    assert background is image and np.array_equal(np.asarray(flattened), np.asarray(strokes))
    assert ui.editor_inputs(None) == (None, None)
    assert ui.editor_inputs({"background": None, "layers": [], "composite": None}) == (None, None)


@pytest.fixture
def page_url(pipe):
    """The page for the tiny pipeline on a free loopback port, in this process."""
    pytest.importorskip("gradio")
    with served(pipe, "tiny") as url:
        yield url


class Recording:
    """The pipeline, with every call's arguments kept: what the page's handler handed it."""

    def __init__(self, pipe) -> None:
        self.__dict__.update(pipe=pipe, calls=[])

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __setattr__(self, name, value):
        setattr(self.pipe, name, value)

    def __call__(self, **arguments):
        self.calls.append(arguments)
        return self.pipe(**arguments)


def browser_or_skip() -> str:
    pytest.importorskip("gradio")
    pytest.importorskip("playwright.sync_api", reason="Playwright is in the test extra: pip install -e '.[test]'")
    chromium = chromium_path()
    if chromium is None and os.environ.get("CI") == "true":
        pytest.fail("CI=true and no Chromium: the page's browser tests must run in CI (.ci/run installs it)")
    if chromium is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install -y chromium; .ci/run installs it)")
    return chromium


def test_edit_in_a_real_browser_paints_the_mask_and_shows_full_size_results(pipe, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = browser_or_skip()
    recording = Recording(pipe)
    photo = ROOT / "examples" / "inputs" / "img.png"
    requests: list[str] = []
    with served(recording, "tiny") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.on("request", lambda request: requests.append(request.url))
        outcome = drive_page(page, url, photo, "a red ball", timeout_s=300)
        page.screenshot(path=str(tmp_path / "ui.png"), full_page=True)
        browser.close()
    assert (tmp_path / "ui.png").stat().st_size > 0
    width, height = PIL.Image.open(photo).size
    (call,) = recording.calls
    assert call["prompt"] == "a red ball" and call["image"].size == (width, height)
    mask = np.asarray(call["mask_image"]) > 127
    rows, columns = np.nonzero(mask)
    assert mask[height // 2, width // 2], "the stroke went through the image's centre"
    assert 0 < mask.mean() < 0.25 and np.ptp(columns) > np.ptp(rows), "a short horizontal stroke, not a fill"
    assert outcome["result_sizes"] == [[width, height]] * len(outcome["result_sizes"]) and outcome["result_sizes"]
    assert "best first" in outcome["status"]
    assert {request.split("/")[2] for request in requests} == {url.split("/")[2]}, "a request left the machine"


def test_page_api_edits_and_refuses_through_gradio_client(page_url, image, tmp_path):
    from gradio_client import Client, handle_file

    image.save(tmp_path / "image.png")
    region_strokes(image).save(tmp_path / "strokes.png")
    client = Client(page_url, verbose=False, analytics_enabled=False)
    editor = {
        "background": handle_file(str(tmp_path / "image.png")),
        "layers": [handle_file(str(tmp_path / "strokes.png"))],
        "composite": None,
    }
    options = ["edit the region", "0,0,64,0", 2, 4, 1.0, "ddpm", 0, 0, 0]
    gallery, mask, message = client.predict(editor, "a red ball", *options, api_name="/edit")
    assert len(gallery) == 2 and "best first" in message
    keep = np.asarray(PIL.Image.open(mask)) == 0
    for item in gallery:
        result = np.asarray(PIL.Image.open(item["image"]).convert("RGB"))
        assert result.shape == (24, 40, 3)
        assert np.array_equal(result[keep], np.asarray(image)[keep])
    with pytest.raises(Exception, match="nothing is painted"):
        client.predict({**editor, "layers": []}, "a red ball", *options, api_name="/edit")


def test_two_people_at_once_each_get_their_own_results(page_url, pipe, image, tmp_path):
    from gradio_client import Client, handle_file

    image.save(tmp_path / "image.png")
    region_strokes(image).save(tmp_path / "strokes.png")
    editor = {
        "background": handle_file(str(tmp_path / "image.png")),
        "layers": [handle_file(str(tmp_path / "strokes.png"))],
        "composite": None,
    }
    people = [Client(page_url, verbose=False, analytics_enabled=False) for _ in range(2)]
    jobs = [
        person.submit(editor, prompt, "edit the region", "", 2, 4, 1.0, "ddpm", seed, 0, api_name="/edit")
        for person, prompt, seed in zip(people, ("a red ball", "a blue square"), (1, 2), strict=True)
    ]
    answers = [job.result(timeout=120) for job in jobs]
    assert "'a red ball'" in answers[0][2] and "seed 1" in answers[0][2]
    assert "'a blue square'" in answers[1][2] and "seed 2" in answers[1][2]
    for (gallery, _, _), prompt, seed in zip(answers, ("a red ball", "a blue square"), (1, 2), strict=True):
        alone = ui.edit_image(pipe, image, region_strokes(image), prompt, "edit", "", 2, 4, 1.0, "ddpm", seed, 0)
        got = [np.asarray(PIL.Image.open(item["image"]).convert("RGB")) for item in gallery]
        assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(got, alone.images, strict=True))


def test_command_refuses_a_missing_model_in_one_line(capsys):
    assert ui.main(["--model", "/no/such/model"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("blended-ui: error: --model /no/such/model: no such directory") and "\n" not in err


def test_a_refused_runs_error_marks_go_with_the_next_input_and_extend_shows_only_for_extend(pipe):
    from playwright.sync_api import sync_playwright

    chromium = browser_or_skip()
    with served(pipe, "tiny") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(url, wait_until="networkidle")
        assert not page.locator("#extend").is_visible()
        page.locator("#scene").click()
        page.locator("#editor img, #editor canvas").first.wait_for()
        page.locator("#prompt textarea").fill("a red ball")
        page.locator("#run").click()  # nothing painted: refused
        page.locator("#results .error").first.wait_for(timeout=60_000)
        assert page.locator("#mask .error").count() > 0
        page.locator("#prompt textarea").type(" and a blue square")
        page.locator("#results .error").first.wait_for(state="detached", timeout=60_000)
        assert page.locator("#mask .error").count() == 0
        page.get_by_label("extend the canvas").check()
        page.locator("#extend").wait_for(state="visible", timeout=60_000)
        browser.close()


@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_the_page_edits_with_a_diffusers_directory_of_each_family(tmp_path, image, family):
    from helpers import save_as_diffusers

    from blended_pipeline.loading import load_pipeline

    save_as_diffusers(family, tmp_path / family)
    pipe = load_pipeline(str(tmp_path / family), "cpu")
    assert pipe.family == family and ui.build_app(pipe, str(tmp_path / family)) is not None
    edit = ui.edit_image(pipe, image, region_strokes(image), "a red ball", "edit", **fast())
    keep = np.asarray(edit.mask) == 0
    assert edit.scores is None and len(edit.images) == 2
    assert all(np.array_equal(np.asarray(picture)[keep], np.asarray(image)[keep]) for picture in edit.images)
