"""A new user's first hour with blended-edit: every mistake is one line and exit 2, before any work; outputs are
never clobbered, half-written or left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.PngImagePlugin
import pytest
from helpers import tiny_pipeline

from blended_pipeline import cli

FAST = ["--steps", "4", "--samples", "2", "--augmentations", "2"]


@pytest.fixture
def tiny_model(tmp_path):
    path = tmp_path / "model"
    tiny_pipeline().save_pretrained(path)
    return path


@pytest.fixture
def files(tmp_path, image, mask):
    folder = tmp_path / "files"
    folder.mkdir()
    image.save(folder / "in.png")
    mask.save(folder / "mask.png")
    return folder


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def cases(files: Path, model: Path) -> dict[str, tuple[list[str], str]]:
    """Each case: the arguments, and a piece of the one-line message (the flag or file it must name)."""
    edit = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    base = [*edit, "--model", str(model), *FAST, "--out", str(files / "out.png")]
    PIL.Image.new("RGB", (1, 1)).save(files / "dot.png")
    PIL.Image.new("L", (1, 1), 255).save(files / "dot-mask.png")
    PIL.Image.new("RGB", (500, 20)).save(files / "strip.png")
    PIL.Image.new("L", (500, 20), 255).save(files / "strip-mask.png")
    whole = (files / "in.png").read_bytes()
    (files / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (files / "a-folder").mkdir()
    no_unet = files / "no-unet"
    no_unet.mkdir()
    (no_unet / "model_index.json").write_text((model / "model_index.json").read_text())
    (files / "earlier.png").write_bytes(whole)
    (files / "a-file").write_text("not a folder")
    return {
        "guidance scale nan": ([*base, "--guidance-scale", "nan"], "--guidance-scale"),
        "guidance scale inf": ([*base, "--guidance-scale", "inf"], "--guidance-scale"),
        "mask blur nan": ([*base, "--mask-blur", "nan"], "--mask-blur"),
        "eta nan": ([*base, "--eta", "nan"], "--eta"),
        "strength nan": ([*base, "--strength", "nan"], "--strength"),
        "crop margin inf": ([*base, "--crop-margin", "inf"], "--crop-margin"),
        "strength too small": ([*base, "--strength", "0.001"], "--strength 0.001 of --steps 4"),
        "1x1 image": ([*base[:1], str(files / "dot.png"), "--mask", str(files / "dot-mask.png"), *base[4:]], "16"),
        "500x20 image": (
            [*base[:1], str(files / "strip.png"), "--mask", str(files / "strip-mask.png"), *base[4:]],
            "4 times",
        ),
        "huge extension": (
            ["--image", str(files / "in.png"), "--extend", "0,0,5000,0", "--prompt", "a red ball"] + base[6:],
            "--extend",
        ),
        "device tpu": ([*base, "--device", "tpu"], "--device tpu"),
        "device absent": ([*base, "--device", "cuda:7"], "--device cuda:7"),
        "output set exists": ([*base[:-1], str(files / "earlier.png")], "--overwrite"),
        "unwritable place": ([*base[:-1], "/proc/self/out.png"], "cannot write"),
        "demo into a file": (["--demo", "--out", str(files / "a-file")], "not a directory"),
        "demo into x.png": (["--demo", "--out", str(files / "x.png")], "directory"),
        "image is a folder": ([*base[:1], str(files / "a-folder"), *base[2:]], "is a directory"),
        "truncated image": ([*base[:1], str(files / "truncated.png"), *base[2:]], "truncated.png"),
        "model without unet": ([*base, "--model", str(no_unet)], "unet"),
        "clip missing": ([*base, "--clip", str(files / "no-clip")], "--clip"),
        "ranking clip missing": ([*base, "--ranking-clip", str(files / "no-clip")], "--ranking-clip"),
        "empty prompt": ([*edit[:-1], " ", *base[6:]], "--prompt"),
        "image over --max-pixels": ([*base, "--max-pixels", "100"], "more than --max-pixels 100"),
        "scheduler the model cannot be guided with": ([*base, "--scheduler", "dpm++"], "--scheduler dpm++"),
        "more steps than trained": ([*base, "--steps", "100000"], "--steps 100000"),
    }


NAMES = [
    "guidance scale nan",
    "guidance scale inf",
    "mask blur nan",
    "eta nan",
    "strength nan",
    "crop margin inf",
    "strength too small",
    "1x1 image",
    "500x20 image",
    "huge extension",
    "device tpu",
    "device absent",
    "output set exists",
    "unwritable place",
    "demo into a file",
    "demo into x.png",
    "image is a folder",
    "truncated image",
    "model without unet",
    "clip missing",
    "ranking clip missing",
    "empty prompt",
    "image over --max-pixels",
    "scheduler the model cannot be guided with",
    "more steps than trained",
]


@pytest.mark.parametrize("name", NAMES)
def test_each_mistake_is_one_line_exit_2_and_nothing_changes(files, tiny_model, capsys, name):
    arguments, named = cases(files, tiny_model)[name]
    before = snapshot(files)
    assert cli.main(arguments) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("blended-edit: error:") and "\n" not in err, err
    assert named in err and "Traceback" not in err
    assert captured.out == ""
    assert snapshot(files) == before


def blank_png(path: Path, width: int, height: int) -> None:
    """A black RGB PNG of any size in a small file (its rows compress to almost nothing)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row = zlib.compressobj(9), bytes(1 + 3 * width)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("side", "message"), [(14000, "decompression bomb"), (8000, "64,000,000 pixels")])
def test_images_far_larger_than_their_files_are_refused_from_the_header(
    files, tiny_model, capsys, monkeypatch, side, message
):
    blank_png(files / "large.png", side, side)
    assert (files / "large.png").stat().st_size < 1_000_000

    def no_decoding(image):
        raise AssertionError(f"a {image.size} image was decoded")

    monkeypatch.setattr(PIL.PngImagePlugin.PngImageFile, "load", no_decoding)
    arguments = ["--image", str(files / "large.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    assert cli.main([*arguments, "--model", str(tiny_model), "--out", str(files / "o.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("blended-edit: error: --image") and message in err and err.count("\n") == 1


def test_the_table_covers_every_case(files, tiny_model):
    assert sorted(NAMES) == sorted(cases(files, tiny_model))


def run_cli(files: Path, model: Path, *extra: str) -> int:
    edit = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    return cli.main([*edit, "--model", str(model), *FAST, "--out", str(files / "out.png"), "--quiet", *extra])


def test_overwrite_replaces_the_whole_set_and_leaves_no_stale_sibling(files, tiny_model):
    assert run_cli(files, tiny_model, "--samples", "3") == 0
    assert (files / "out-3.png").exists()
    assert run_cli(files, tiny_model) == 2  # the set exists
    assert run_cli(files, tiny_model, "--samples", "2", "--overwrite") == 0
    written = sorted(p.name for p in files.glob("out*"))
    assert written == ["out-1.png", "out-2.png", "out-grid.png", "out-scores.json", "out.png"]
    assert len(json.loads((files / "out-scores.json").read_text())["results"]) == 2


def test_outputs_follow_the_umask_and_no_temporary_file_remains(files, tiny_model):
    previous = os.umask(0o027)
    try:
        assert run_cli(files, tiny_model) == 0
    finally:
        os.umask(previous)
    for path in files.glob("out*"):
        assert path.stat().st_mode & 0o777 == 0o640
    assert not list(files.glob(".*"))


def test_progress_lines_name_model_steps_and_outputs(files, tiny_model, capsys):
    edit = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    assert cli.main([*edit, "--model", str(tiny_model), *FAST, "--strength", "0.5", "--out", str(files / "o.png")]) == 0
    captured = capsys.readouterr()
    assert f"loading {tiny_model} on cpu (fp32)" in captured.err
    assert "2 of 4 steps, the first 2 skipped at strength 0.5 (--strength)" in captured.err
    assert str(files / "o.png") in captured.out.splitlines()


@pytest.mark.parametrize("moment", ["loading", "editing"])
def test_ctrl_c_prints_one_line_exits_130_and_leaves_nothing(files, tiny_model, moment):
    out = files / "out.png"
    command = [sys.executable, "-m", "blended_pipeline.cli", "--image", str(files / "in.png")]
    command += ["--mask", str(files / "mask.png"), "--prompt", "a red ball", "--model", str(tiny_model)]
    command += ["--steps", "100", "--strength", "1", "--samples", "8", "--augmentations", "16", "--out", str(out)]
    before = snapshot(files)
    process = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        # A suite started in the background inherits SIGINT ignored; a user's shell delivers it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lines.append(process.stderr.readline())
        if f"blended-edit: {moment}" in lines[-1]:
            break
    if moment == "editing":
        time.sleep(2.0)  # well into the denoising loop
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130
    tail = [line for line in rest.splitlines() if line.strip() and "%|" not in line]
    assert tail == ["blended-edit: interrupted; nothing was written"], rest
    assert snapshot(files) == before


def test_a_16_bit_png_is_read_with_its_range_not_clipped(tmp_path):
    from blended_pipeline.image_io import load_image

    ramp = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    PIL.Image.fromarray(ramp).save(tmp_path / "deep.png")
    with PIL.Image.open(tmp_path / "deep.png") as image:
        assert image.mode in ("I;16", "I")
        loaded = load_image(image)
    assert np.allclose(loaded[0, 0].numpy(), ramp / 65535, atol=1e-6)


def test_long_prompts_and_words_outside_the_vocabulary_are_named(pipe, image, mask, recwarn):
    from blended_pipeline.settings import InputWarning
    from blended_pipeline.shapes.tokenizer import unknown_words

    pipe(
        prompt="a red ball a blue square a red circle a blue ball",
        image=image,
        mask_image=mask,
        num_inference_steps=2,
        strength=1.0,
        num_images_per_prompt=1,
        num_augmentations=1,
    )
    cut = [w for w in recwarn if issubclass(w.category, InputWarning)]
    assert cut and "dropped" in str(cut[0].message) and "ball" in str(cut[0].message)
    assert unknown_words("a café circle 红色", ["a", "circle"]) == ["café", "红色"]


def test_a_set_another_live_run_holds_is_refused_and_a_killed_runs_claim_is_taken_over(files, tiny_model, capsys):
    claim = files / ".out.png.claim"
    hold = (
        "import fcntl, os, sys, time; d = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR); fcntl.flock(d, fcntl.LOCK_EX)"
    )
    hold += "; os.write(d, str(os.getpid()).encode()); print('held', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(claim)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in ((), ("--overwrite",)):
            assert run_cli(files, tiny_model, "--quiet", *extra) == 2
            assert f"another run (process {holder.pid}) is writing this output set" in capsys.readouterr().err
        assert not (files / "out.png").exists() and claim.exists()
    finally:
        holder.kill()
        holder.wait()
    assert run_cli(files, tiny_model, "--quiet") == 0  # the claim of a process that is gone is taken over
    assert (files / "out.png").is_file() and not claim.exists()


def test_two_runs_started_together_on_one_output_set_one_completes_and_nothing_mixes(files, tiny_model):
    edit = ["--image", str(files / "in.png"), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
    common = [*edit, "--model", str(tiny_model), "--steps", "20", "--samples", "2", "--out", str(files / "out.png")]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "blended_pipeline.cli", *common, "--seed", str(seed), "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for seed in (1, 2)
    ]
    ended = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    assert sorted(code for code, _, _ in ended) == [0, 2]
    (_, written, _), (_, _, refused) = sorted(ended, key=lambda e: e[0])
    assert "another run" in refused or "earlier run" in refused
    record = json.loads((files / "out-scores.json").read_text())
    winner = next(seed for seed, (code, _, _) in zip((1, 2), ended, strict=True) if code == 0)
    assert record["seed"] == winner and len(written.split()) == len(list(files.glob("out*")))
    best, first = (np.asarray(PIL.Image.open(files / name)) for name in ("out.png", "out-1.png"))
    assert np.array_equal(best, first) and not list(files.glob(".*claim"))


def test_inputs_read_in_a_way_their_author_may_not_expect_are_said_once_in_one_line(files, tiny_model, capsys):
    frames = [PIL.Image.new("RGB", (32, 32), (40 * i, 0, 0)) for i in range(3)]
    frames[0].save(files / "anim.gif", save_all=True, append_images=frames[1:])
    PIL.Image.new("CMYK", (32, 32), (10, 20, 30, 0)).save(files / "cmyk.jpg")
    PIL.Image.new("RGBA", (32, 32), (10, 20, 30, 128)).save(files / "alpha.png")
    expected = {
        "anim.gif": "has 3 frames; the first is edited",
        "cmyk.jpg": "is CMYK; it is edited as RGB",
        "alpha.png": "has an alpha channel",
    }
    for name, message in expected.items():
        edit = ["--image", str(files / name), "--mask", str(files / "mask.png"), "--prompt", "a red ball"]
        out = ["--out", str(files / f"{name}.png"), "--model", str(tiny_model), *FAST, "--quiet"]
        PIL.Image.open(files / "mask.png").resize((32, 32)).save(files / "mask.png")
        assert cli.main([*edit, *out]) == 0
        warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
        assert len(warned) == 1 and message in warned[0], warned
    long_prompt = " ".join(["a red ball"] * 150)
    edit = ["--image", str(files / "alpha.png"), "--mask", str(files / "mask.png"), "--prompt", long_prompt]
    assert cli.main([*edit, "--out", str(files / "long.png"), "--model", str(tiny_model), *FAST, "--quiet"]) == 0
    err = capsys.readouterr().err
    cut = [line for line in err.splitlines() if "dropped" in line]
    assert len(cut) == 1 and len(cut[0]) < 200 and "(444 words)" in cut[0], err
