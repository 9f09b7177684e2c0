"""Edit through the page in a real headless browser, as a person would, and save a screenshot.

    python examples/ui_screenshot.py --out docs/figures/ui.png        # the shipped shapes model, a shapes scene

Needs the ui and test extras (``pip install -e ".[test]"``) and a Chromium (Debian: ``apt-get install -y chromium``);
Playwright drives the system's browser, so nothing is downloaded. ``tests/test_ui_browser.py`` runs the same
``drive_page`` against a tiny model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Without these Chromium keeps calling Google's services, which a closed network refuses.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """The system's Chromium, if there is one."""
    return next(filter(None, (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome"))), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(pipe: Any, model_name: str) -> Iterator[str]:
    """The page for ``pipe`` on a free loopback port, in this process; yields its address."""
    from blended_pipeline import ui

    app = ui.build_app(pipe, model_name)
    port = free_port()
    app.launch(**ui.launch_options(), server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def drive_page(page: Any, url: str, image: Path | None, prompt: str, timeout_s: float = 600) -> dict:
    """Open the page, upload ``image`` (None: click "Shapes scene"), paint one short horizontal stroke through the
    image's centre, type ``prompt``, run, and wait for the gallery. Returns the gallery images' natural sizes and
    the status line."""
    page.goto(url, wait_until="networkidle")  # an upload before the page is fully loaded can be dropped
    if image is None:
        page.locator("#scene").click()
    else:
        page.locator("#editor input[type=file]").set_input_files(str(image))
    page.locator("#editor img, #editor canvas").first.wait_for()
    time.sleep(1.0)  # the editor draws the image onto its canvas
    page.get_by_role("button", name="Brush", exact=True).click()
    canvas = page.locator("#editor canvas").first.bounding_box()  # the image is shown centred in it
    reach = min(canvas["width"], canvas["height"]) * 0.1
    y = canvas["y"] + canvas["height"] / 2
    start, end = canvas["x"] + canvas["width"] / 2 - reach, canvas["x"] + canvas["width"] / 2 + reach
    page.mouse.move(start, y)
    page.mouse.down()
    for fraction in (0.25, 0.5, 0.75, 1.0):  # few moves: each costs ~0.4 s in software rendering
        page.mouse.move(start + (end - start) * fraction, y)
    page.mouse.up()
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#run").click()
    page.locator("#results img").first.wait_for(timeout=timeout_s * 1000)
    page.wait_for_function(  # the gallery adds its <img> elements before their pictures have loaded
        "() => [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=timeout_s * 1000,
    )
    sizes = page.locator("#results img").evaluate_all("images => images.map(i => [i.naturalWidth, i.naturalHeight])")
    return {
        "result_sizes": sizes,
        "status": page.locator("#status").inner_text(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="screenshot PNG")
    parser.add_argument("--image", type=Path, help="image to upload (default: a shapes scene)")
    parser.add_argument("--prompt", default="a red circle")
    args = parser.parse_args()
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from playwright.sync_api import sync_playwright

    from blended_pipeline import SHAPES_CHECKPOINT, BlendedDiffusionPipeline

    pipe = BlendedDiffusionPipeline.from_pretrained(SHAPES_CHECKPOINT)
    with served(pipe, "shapes (shipped)") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        outcome = drive_page(page, url, args.image, args.prompt)
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    print(outcome)


if __name__ == "__main__":
    main()
