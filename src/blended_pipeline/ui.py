"""``blended-ui``: a web page to edit by painting the mask with a brush (Gradio; ``pip install -e ".[ui]"``).

    blended-ui                                  # the shipped shapes model, on http://127.0.0.1:7860
    blended-ui --model DIR --device cuda --dtype bf16 --port 8000

The page calls ``edit_image``, a plain function (images, strokes, prompt, options in; ranked results out) that
makes the same edit request as the command line and is used and tested without the page. Nothing leaves the
machine: analytics are off, fonts are the system's, and
there is no share link unless ``--share`` asks for one. See docs/ui.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image

from blended_pipeline import SHAPES_CHECKPOINT
from blended_pipeline.applications import APPLICATIONS
from blended_pipeline.arguments import OneLineParser, add_setting_option
from blended_pipeline.request import EditRequest, pipeline_defaults, pipeline_kind, run_edit
from blended_pipeline.settings import (
    BY_NAME,
    DTYPES,
    LATENT_ONLY_SCHEDULERS,
    SCHEDULERS,
    SETTINGS,
    EditSettings,
    UsageError,
)

if TYPE_CHECKING:
    import gradio as gr

    from blended_pipeline.pipeline import BlendedDiffusionPipeline

MAX_SIDE = 4096  # larger uploads are refused (a 4096x4096 PNG is ~50 MB; the edit itself runs on a crop)
MAX_FILE_SIZE = "64mb"  # Gradio refuses larger uploads before they reach the handler
CONCURRENCY = 1  # edits run one at a time on the one model; the others wait in the queue
QUEUE_SIZE = 16  # waiting edits beyond this are turned away with a message
SCENE_SCALE = 8  # the shapes scene is rendered at the model's 32 px and shown 8x larger, to paint on
APPLICATION_LABELS = {
    "edit the region": "edit",
    "replace the background": "background",
    "scribble (the painted colours are the strokes)": "scribble",
    "extend the canvas": "extend",
}
PAGE_NAMES = {setting.name: setting.page for setting in SETTINGS if setting.page} | {"prompt": "prompt"}
"""The settings the page offers, by their labels there (from the settings table)."""


class PageError(ValueError):
    """A problem with what the page sent, in words for the person at the page."""


@dataclass
class PageEdit:
    """What the page shows: the results (best first) with their scores, the mask used, and a line about the run."""

    images: list[PIL.Image.Image]
    scores: list[float]
    mask: PIL.Image.Image
    message: str


def strokes_from_layers(layers: Sequence[PIL.Image.Image | None], size: tuple[int, int]) -> PIL.Image.Image | None:
    """The painted layers flattened into one RGBA image of ``size`` (W, H), upper layers over lower ones; None when
    nothing is painted. Its alpha is the mask (the union of the layers' alpha); its colours are the strokes."""
    strokes = PIL.Image.new("RGBA", size, (0, 0, 0, 0))
    for layer in layers:
        if layer is None:
            continue
        if layer.size != size:
            raise PageError(f"a painted layer is {layer.size[0]}x{layer.size[1]}, the image {size[0]}x{size[1]}")
        strokes.alpha_composite(layer.convert("RGBA"))
    return strokes if strokes.getchannel("A").getbbox() else None


def mask_from_strokes(strokes: PIL.Image.Image) -> PIL.Image.Image:
    """White where anything is painted (alpha > 0), black elsewhere."""
    return PIL.Image.fromarray((np.asarray(strokes.getchannel("A")) > 0).astype(np.uint8) * 255)


def edit_image(
    pipe: BlendedDiffusionPipeline,
    image: PIL.Image.Image | None,
    strokes: PIL.Image.Image | None,
    prompt: str,
    application: str = "edit",
    extend: str = "",
    samples: int = BY_NAME["num_images_per_prompt"].default,
    steps: int | None = None,
    strength: float | None = None,
    scheduler: str | None = None,
    seed: int = 0,
    mask_blur: float = BY_NAME["mask_blur"].default,
    zoom: float | None = None,
    on_step: Callable[[int, int], None] | None = None,
    max_pixels: int | None = None,
) -> PageEdit:
    """Edit ``image`` where ``strokes`` (RGBA, the painted layers) are painted, as ``application`` says.

    ``application``: "edit" (the painted region), "background" (all but the painted region), "scribble" (the
    painted colours are strokes, shaped by the prompt) or "extend" (``extend`` = "LEFT,TOP,RIGHT,BOTTOM" pixels
    of new canvas; nothing need be painted). ``strength`` None is the application's default for the checkpoint,
    ``steps`` None the pipeline's, ``scheduler`` None keeps the pipeline's own.
    ``on_step(done, total)`` follows the denoising; ``max_pixels`` (None: the table's) limits the image. Raises
    ``PageError`` before any work for bad input.
    """
    settings = EditSettings(
        num_images_per_prompt=_whole(samples),
        num_inference_steps=None if steps is None else _whole(steps),
        strength=strength,
        mask_blur=mask_blur,
        zoom=zoom,
        scheduler=scheduler,
        seed=seed,
        max_pixels=max_pixels,
    )
    request, inputs = _checked_request(pipe, image, strokes, prompt, application, extend, settings)
    result = run_edit(pipe, request, inputs, on_step)
    message = (
        f"{len(result.images)} results for {prompt!r}, best first: {result.steps_run} of "
        f"{result.settings['num_inference_steps']} steps at strength {result.settings['strength']:g}, "
        f"{result.scheduler}, seed {seed}"
    )
    return PageEdit(images=result.images, scores=result.scores, mask=result.mask.convert("L"), message=message)


def _checked_request(
    pipe: BlendedDiffusionPipeline,
    image: PIL.Image.Image | None,
    strokes: PIL.Image.Image | None,
    prompt: str,
    application: str,
    extend: str,
    settings: Any,
) -> tuple[EditRequest, tuple[PIL.Image.Image, PIL.Image.Image]]:
    """The page's request and the image and mask it edits, or a ``PageError`` saying what to fix."""
    if image is None:
        raise PageError("no image: upload one, or click 'Shapes scene'")
    width, height = image.size
    if max(width, height) > MAX_SIDE:
        raise PageError(f"the image is {width}x{height}; the page takes up to {MAX_SIDE} pixels a side: downscale it")
    if application not in APPLICATIONS:
        raise PageError(f"application {application!r}: expected one of {', '.join(APPLICATIONS)}")
    if application != "extend" and strokes is None:
        raise PageError("nothing is painted: paint the region to edit on the image with the brush")
    image = image.convert("RGB")
    request = EditRequest(
        prompt if isinstance(prompt, str) else None,
        image,
        mask=mask_from_strokes(strokes) if application in ("edit", "background") else None,
        application=application,
        scribble=strokes if application == "scribble" else None,
        extend=_extension(extend) if application == "extend" else None,
        settings=settings,
        names={**PAGE_NAMES, "image": "the image", "extend": "extend"},
    )
    try:
        request.check()
        trained = pipe.scheduler.config.get("num_train_timesteps")
        request.check_for(pipeline_kind(pipe), "the model", trained, getattr(pipe, "family", None))
        image, mask = request.shaped_inputs()  # the pipeline checks the mask's values before any work
    except UsageError as error:
        raise PageError(str(error)) from error
    coverage = float(np.mean(np.asarray(mask) > 127))
    if coverage == 1.0:
        keep = "leave some of the image unpainted" if application != "background" else "paint the object to keep"
        raise PageError(f"the mask covers the whole image, so nothing would be kept: {keep}")
    if coverage == 0.0:
        raise PageError("the mask is empty: the painted object covers the whole image, leaving no background to edit")
    return request, (image, mask)


def schedulers_for(pipe: Any) -> list[str]:
    """The schedulers offered by name that ``pipe`` can run (a pixel model's CLIP guidance rules some out)."""
    latent = pipeline_kind(pipe) == "latent"
    return [name for name in SCHEDULERS if latent or name not in LATENT_ONLY_SCHEDULERS]


def scheduler_name(pipe: Any) -> str | None:
    """The name ``SCHEDULERS`` gives the pipeline's scheduler, if it offers it."""
    return next((name for name, cls in SCHEDULERS.items() if cls == type(pipe.scheduler).__name__), None)


def _whole(value: Any) -> Any:
    """A page's number box sends floats: a whole float becomes an int; anything else is left for the checks."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _extension(extend: str) -> tuple[int, int, int, int]:
    parts = [part.strip() for part in (extend or "").split(",")]
    if len(parts) != 4 or not all(part.isdigit() for part in parts):
        raise PageError(f"extend: expected LEFT,TOP,RIGHT,BOTTOM as four whole numbers of pixels, got {extend!r}")
    pixels = tuple(int(part) for part in parts)
    if sum(pixels) == 0:
        raise PageError("extend: all four are 0; give the pixels of new canvas on at least one side")
    return pixels


def shapes_scene(seed: int) -> PIL.Image.Image:
    """A rendered shapes scene, enlarged (nearest) to paint on: the first visit needs no file."""
    from blended_pipeline.shapes.world import random_scene, render

    scene = render(random_scene(np.random.default_rng(seed), 32), 32)
    return PIL.Image.fromarray(scene).resize((32 * SCENE_SCALE, 32 * SCENE_SCALE), PIL.Image.NEAREST)


def editor_inputs(value: dict | None) -> tuple[PIL.Image.Image | None, PIL.Image.Image | None]:
    """The image and the flattened strokes from ``gr.ImageEditor``'s value (background, layers, composite)."""
    if not value or value.get("background") is None:
        return None, None
    background = value["background"]
    return background, strokes_from_layers(value.get("layers") or [], background.size)


def build_app(pipe: BlendedDiffusionPipeline, model_name: str, max_pixels: int | None = None) -> gr.Blocks:
    """The page: an image editor with a brush, the prompt, the application and the options, and the results."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio builds the app: no request leaves
    import gradio as gr

    def run(
        editor: dict | None,
        prompt: str,
        application: str,
        extend: str,
        samples: float,
        steps: float,
        strength: float,
        scheduler: str,
        seed: float,
        mask_blur: float,
        zoom: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - how Gradio finds where to report progress
    ):
        image, strokes = editor_inputs(editor)
        try:
            edit = edit_image(
                pipe,
                image,
                strokes,
                prompt,
                APPLICATION_LABELS[application],
                extend,
                samples,
                steps,
                strength,
                scheduler,
                _whole(seed),
                mask_blur,
                zoom,
                on_step=lambda done, total: progress((done, total)),
                max_pixels=max_pixels,
            )
        except PageError as error:
            raise gr.Error(str(error), print_exception=False) from error
        scores = edit.scores or [None] * len(edit.images)
        gallery = [
            (picture, f"#{rank} " + ("not ranked" if score is None else f"score {score:.3f}"))
            for rank, (picture, score) in enumerate(zip(edit.images, scores, strict=True), start=1)
        ]
        return gallery, edit.mask, edit.message

    with gr.Blocks(title="blended-pipeline", analytics_enabled=False) as app:
        gr.Markdown(
            f"## Edit a region by painting it\nModel: `{model_name}`. Paint the region with the brush, "
            "describe what it should show, and run."
        )
        with gr.Row():
            with gr.Column():
                editor = gr.ImageEditor(
                    label="image: paint the region to edit",
                    type="pil",
                    image_mode="RGBA",
                    format="png",
                    transforms=(),
                    brush=gr.Brush(
                        colors=["#e02020", "#2040e0", "#20a040", "#f0d020", "#ffffff"], color_mode="defaults"
                    ),
                    elem_id="editor",
                )
                scene = gr.Button("Shapes scene", size="sm", elem_id="scene")
                prompt = gr.Textbox(
                    label="prompt", info="what the region should show, e.g. a red circle", elem_id="prompt"
                )
                application = gr.Radio(
                    list(APPLICATION_LABELS), value="edit the region", label="application", elem_id="application"
                )
                extend = gr.Textbox(
                    label="extend: LEFT,TOP,RIGHT,BOTTOM pixels", value="0,0,64,0", visible=False, elem_id="extend"
                )
                with gr.Accordion("options", open=False):
                    defaults = pipeline_defaults(pipe)
                    samples = gr.Number(defaults["num_images_per_prompt"], label="samples", precision=0)
                    steps = gr.Number(defaults["num_inference_steps"], label="steps", precision=0)
                    strength = gr.Slider(0.05, 1.0, value=defaults["strength"], step=0.05, label="strength")
                    scheduler = gr.Dropdown(schedulers_for(pipe), value=scheduler_name(pipe), label="scheduler")
                    seed = gr.Number(BY_NAME["seed"].default, label="seed", precision=0)
                    mask_blur = gr.Number(defaults["mask_blur"], label="mask blur (pixels)")
                    zoom = gr.Number(defaults["zoom"], label="zoom (the small mask's share of its crop; 0: none)")
                run_button = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column():
                gallery = gr.Gallery(label="results, best first", format="png", columns=2, elem_id="results")
                used_mask = gr.Image(label="mask used", type="pil", format="png", elem_id="mask")
                status = gr.Markdown(elem_id="status")
        scene.click(
            lambda: {"background": shapes_scene(np.random.randint(1 << 30)), "layers": [], "composite": None},
            outputs=editor,
        )
        application.change(
            lambda chosen: gr.update(visible=APPLICATION_LABELS[chosen] == "extend"), application, extend
        )
        for changed in (editor.change, prompt.input, application.change):  # a refused run's error marks go
            changed(lambda: (gr.update(), gr.update(), gr.update()), outputs=[gallery, used_mask, status])
        run_button.click(
            run,
            inputs=[editor, prompt, application, extend, samples, steps, strength, scheduler, seed, mask_blur, zoom],
            outputs=[gallery, used_mask, status],
            api_name="edit",
        )
    return app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)


def launch_options() -> dict[str, Any]:
    """``launch`` options every server of the page uses: system fonts (the default theme fetches Google's) and the
    upload limit."""
    import gradio as gr

    fonts = dict(font=("ui-sans-serif", "system-ui", "sans-serif"), font_mono=("ui-monospace", "monospace"))
    return dict(theme=gr.themes.Default(**fonts), max_file_size=MAX_FILE_SIZE)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="blended-ui", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=SHAPES_CHECKPOINT, help="pipeline directory or hub id (default: shapes)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or mps (default: cuda when present)")
    add_setting_option(parser, BY_NAME["mixed_precision"])
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link (goes online)")
    add_setting_option(parser, BY_NAME["max_pixels"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from blended_pipeline.loading import check_model_directory, load_pipeline, resolve_device

    args = build_parser().parse_args(argv)
    max_pixels = BY_NAME["max_pixels"].default if args.max_pixels is None else args.max_pixels
    try:
        BY_NAME["max_pixels"].check(max_pixels, "--max-pixels")
        check_model_directory(args.model)
        precision = DTYPES[args.mixed_precision or "fp32"]
        pipe = load_pipeline(args.model, resolve_device(args.device), mixed_precision=precision)
    except (UsageError, ValueError) as error:
        print(f"blended-ui: error: {error}", file=sys.stderr)
        return 2
    # Uploads are decoded before the page sees them; PIL refuses images of more than twice this many pixels.
    PIL.Image.MAX_IMAGE_PIXELS = max_pixels // 2
    app = build_app(pipe, args.model, max_pixels)
    if not args.share:  # Gradio's own start-up lines would point at its launch(share=True), not at --share
        print(f"blended-ui: serving the page on http://{args.host}:{args.port} (--share adds a public link)")
    app.launch(**launch_options(), server_name=args.host, server_port=args.port, share=args.share, quiet=not args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
