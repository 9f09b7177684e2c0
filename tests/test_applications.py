"""The paper's applications: background replacement, scribbles, extrapolation; from Python and the CLI."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from helpers import fast_call, tiny_pipeline

from blended_pipeline import cli
from blended_pipeline.applications import apply_scribble, extend_canvas, invert_mask

FAST = ["--steps", "4", "--samples", "2", "--augmentations", "2"]


def test_invert_mask():
    mask = PIL.Image.fromarray(np.array([[0, 255], [200, 10]], dtype=np.uint8))
    assert np.asarray(invert_mask(mask)).tolist() == [[255, 0], [0, 255]]


def test_scribble_from_transparent_strokes_and_from_differing_pixels(image):
    strokes = PIL.Image.new("RGBA", image.size, (0, 0, 0, 0))
    strokes.paste((255, 0, 0, 255), (10, 8, 14, 12))
    painted, mask = apply_scribble(image, strokes, dilation=1)
    assert np.all(np.asarray(painted)[8:12, 10:14] == [255, 0, 0])
    assert np.asarray(mask).astype(bool).sum() == 6 * 6  # 4x4 strokes grown by one pixel
    rgb = np.asarray(image).copy()
    rgb[2:4, 2:4] = [0, 255, 0]
    _, rgb_mask = apply_scribble(image, PIL.Image.fromarray(rgb), dilation=0)
    assert np.asarray(rgb_mask).astype(bool).sum() == 4
    with pytest.raises(ValueError, match="no strokes"):
        apply_scribble(image, image.copy())
    with pytest.raises(ValueError, match="same size"):
        apply_scribble(image, image.resize((10, 10)))


def test_extend_canvas_keeps_the_image_and_masks_the_new_area(image):
    canvas, mask = extend_canvas(image, 3, 0, 5, 2)
    assert canvas.size == (48, 26) and mask.size == (48, 26)
    assert np.array_equal(np.asarray(canvas)[0:24, 3:43], np.asarray(image))
    kept = np.asarray(mask) == 0
    assert kept.sum() == 40 * 24 and kept[0:24, 3:43].all()
    assert np.array_equal(np.asarray(canvas)[5, 0], np.asarray(image)[5, 0])  # edge replicated
    with pytest.raises(ValueError, match="non-negative"):
        extend_canvas(image, 0, 0, 0, 0)


def test_extend_canvas_fills(image):
    striped = np.zeros((8, 16, 3), np.uint8)
    striped[:, :15] = (0, 0, 255)
    striped[:, 15] = (255, 0, 0)  # only the last column is red
    edge, _ = extend_canvas(PIL.Image.fromarray(striped), 0, 0, 8, 0, fill="edge")
    mirror, _ = extend_canvas(PIL.Image.fromarray(striped), 0, 0, 8, 0, fill="mirror")
    assert np.all(np.asarray(edge)[:, 16:] == (255, 0, 0))
    reflected = np.asarray(mirror)[:, 16:].astype(int)
    assert reflected[..., 2].mean() > reflected[..., 0].mean()  # the blue columns behind the edge, mirrored
    noise, _ = extend_canvas(image, 0, 4, 8, 0, fill="noise", seed=3)
    assert np.array_equal(np.asarray(noise)[4:, :40], np.asarray(image))
    assert np.asarray(noise)[:, 40:].std() > 60
    assert np.array_equal(np.asarray(extend_canvas(image, 0, 4, 8, 0, fill="noise", seed=3)[0]), np.asarray(noise))
    for fill in ("edge", "mirror"):
        assert np.array_equal(np.asarray(extend_canvas(image, 2, 4, 8, 1, fill=fill)[0])[4:28, 2:42], image)
    with pytest.raises(ValueError, match="fill must be one of"):
        extend_canvas(image, 0, 0, 1, 0, fill="zeros")


def test_background_replacement_keeps_the_object_exact(image, mask):
    pipe = tiny_pipeline()
    out = fast_call(pipe, image, invert_mask(mask))
    obj = np.asarray(mask) > 0
    source = np.asarray(image).astype(np.float32) / 255
    assert all(np.array_equal(result[obj], source[obj]) for result in out.images)


@pytest.fixture
def tiny_model(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")


def run_cli(tmp_path, tiny_model, *arguments):
    return cli.main(
        [*arguments, "--prompt", "a red ball", "--out", str(tmp_path / "out.png"), "--model", tiny_model, *FAST]
        + ["--overwrite"]  # each call replaces the previous one's outputs
    )


def test_cli_invert_mask_extend_and_scribble(tmp_path, tiny_model, image, mask):
    image.save(tmp_path / "in.png")
    mask.save(tmp_path / "mask.png")
    assert (
        run_cli(
            tmp_path,
            tiny_model,
            "--image",
            str(tmp_path / "in.png"),
            "--mask",
            str(tmp_path / "mask.png"),
            "--invert-mask",
        )
        == 0
    )
    result = np.asarray(PIL.Image.open(tmp_path / "out.png"))
    obj = np.asarray(mask) > 0
    assert np.array_equal(result[obj], np.asarray(image)[obj])

    assert run_cli(tmp_path, tiny_model, "--image", str(tmp_path / "in.png"), "--extend", "8,0,8,0") == 0
    result = np.asarray(PIL.Image.open(tmp_path / "out.png"))
    assert result.shape == (24, 56, 3) and np.array_equal(result[:, 8:48], np.asarray(image))

    strokes = PIL.Image.new("RGBA", image.size, (0, 0, 0, 0))
    strokes.paste((255, 0, 0, 255), (12, 6, 20, 14))
    strokes.save(tmp_path / "strokes.png")
    assert (
        run_cli(tmp_path, tiny_model, "--image", str(tmp_path / "in.png"), "--scribble", str(tmp_path / "strokes.png"))
        == 0
    )
    result = np.asarray(PIL.Image.open(tmp_path / "out.png"))
    assert np.array_equal(result[:4], np.asarray(image)[:4])  # far from the strokes: untouched


@pytest.mark.parametrize(
    "arguments",
    [
        ["--extend", "1,2,3"],
        ["--extend", "4,0,0,0", "--mask", "MASK"],
        ["--scribble", "SMALL"],
        ["--mask-blur", "-1", "--mask", "MASK"],
    ],
)
def test_cli_application_errors_are_one_line_exit_2(tmp_path, tiny_model, image, mask, capsys, arguments):
    image.save(tmp_path / "in.png")
    mask.save(tmp_path / "mask.png")
    image.resize((8, 8)).save(tmp_path / "small.png")
    names = {"MASK": str(tmp_path / "mask.png"), "SMALL": str(tmp_path / "small.png")}
    arguments = [names.get(a, a) for a in arguments]
    before = set(tmp_path.iterdir())
    try:
        code = run_cli(tmp_path, tiny_model, "--image", str(tmp_path / "in.png"), *arguments)
    except SystemExit as exit_:  # argparse's own errors (a malformed --extend)
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("blended-edit: error:") and "\n" not in err
    assert set(tmp_path.iterdir()) == before
