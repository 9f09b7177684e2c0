"""blended-edit-batch: the manifest's checks, results per edit, failures recorded, several processes, resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from helpers import another_tiny_clip, tiny_pipeline

from blended_pipeline import batch

FAST = ["--steps", "4", "--samples", "2", "--augmentations", "2"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A tiny model, six images, a mask and a scribble, and a manifest of six edits over all four applications."""
    folder = tmp_path_factory.mktemp("batch")
    tiny_pipeline().save_pretrained(folder / "model")
    rng = np.random.default_rng(0)
    for i in range(6):
        PIL.Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    mask = np.zeros((24, 40), np.uint8)
    mask[6:18, 10:26] = 255
    PIL.Image.fromarray(mask).save(folder / "mask.png")
    scribble = np.zeros((24, 40, 4), np.uint8)
    scribble[8:14, 12:20] = (255, 0, 0, 255)
    PIL.Image.fromarray(scribble).save(folder / "scribble.png")
    lines = [
        {"id": "e0", "image": "img0.png", "mask": "mask.png", "prompt": "a red ball", "seed": 3},
        {"id": "e1", "image": "img1.png", "mask": "mask.png", "prompt": "a blue square", "samples": 3},
        {
            "id": "e2",
            "image": "img2.png",
            "mask": "mask.png",
            "prompt": "a blue background",
            "application": "background",
        },
        {"id": "e3", "image": "img3.png", "scribble": "scribble.png", "prompt": "a red circle"},
        {
            "id": "e4",
            "image": "img4.png",
            "extend": [0, 0, 8, 0],
            "prompt": "a blue background",
            "extend_fill": "mirror",
        },
        {"id": "e5", "image": "img5.png", "mask": "mask.png", "prompt": "a red square", "strength": 0.5, "steps": 6},
    ]
    write_manifest(folder / "edits.jsonl", lines)
    return folder


def write_manifest(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def launch(
    workspace: Path, out: Path, *launcher: str, manifest: str = "edits.jsonl", options: tuple[str, ...] = ()
) -> subprocess.Popen:
    """The batch in fresh processes, one thread each (two torch processes with two threads on two cores crawl)."""
    command = [*launcher, "-m", "blended_pipeline.batch", str(workspace / manifest), "--out", str(out)]
    command += ["--model", str(workspace / "model"), *FAST, "--quiet", *options]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


ONE_PROCESS = (sys.executable,)
OWN_WORKERS = ("--processes", "2")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_processes() -> tuple[str, ...]:
    """``accelerate launch`` of two processes, on a free port (a relaunch never meets the last run's socket)."""
    launcher = ("-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--main_process_port")
    return (sys.executable, *launcher, str(free_port()))


def finished(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def results(out: Path, edit_id: str) -> tuple[list[np.ndarray], dict]:
    record = json.loads((out / edit_id / "result.json").read_text())
    pictures = [np.asarray(PIL.Image.open(out / edit_id / r["file"])) for r in record["results"]]
    return pictures, record


@pytest.fixture(scope="module")
def one_process_run(workspace, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "out"
    code, _, err = finished(launch(workspace, out, *ONE_PROCESS))
    assert code == 0, err
    return out


def torchrun() -> tuple[str, ...]:
    return (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()))


def two_machines(workspace: Path, out: Path) -> list[subprocess.Popen]:
    """Two accelerate launchers, machine ranks 0 and 1 of a two-machine job, meeting over loopback."""
    port = str(free_port())
    common = ("-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2", "--num_processes", "2")
    network = ("--main_process_ip", "127.0.0.1", "--main_process_port", port, "--rdzv_backend", "static")
    return [
        launch(workspace, out, sys.executable, *common, "--machine_rank", str(rank), *network, "--same_network")
        for rank in (0, 1)
    ]


def run_two_machines(workspace: Path, out: Path, attempts: int = 2) -> None:
    """The two-machine job; once in a loaded CI run its rendezvous over loopback hung past 300 s (it takes about
    25 s), so a hung attempt is stopped and the job started again on a new port, with a clean output folder."""
    for attempt in range(attempts):
        launchers = two_machines(workspace, out)
        try:
            for launcher in launchers:
                code, _, err = finished(launcher, timeout=150)
                assert code == 0, err
            return
        except subprocess.TimeoutExpired:
            for launcher in launchers:  # each launcher leads its own process group: its workers go with it
                if launcher.poll() is None:
                    os.killpg(launcher.pid, signal.SIGKILL)
                launcher.communicate()
            shutil.rmtree(out, ignore_errors=True)
            if attempt == attempts - 1:
                raise


@pytest.mark.parametrize("how", ["--processes", "accelerate", "torchrun", "two machines"])
def test_two_processes_do_each_edit_once_and_equal_one_process(workspace, one_process_run, tmp_path, how):
    out = tmp_path / "two"
    if how == "two machines":
        run_two_machines(workspace, out)
    elif how == "--processes":
        code, _, err = finished(launch(workspace, out, *ONE_PROCESS, options=OWN_WORKERS))
        assert code == 0, err
    else:
        code, _, err = finished(launch(workspace, out, *(two_processes() if how == "accelerate" else torchrun())))
        assert code == 0, err
    two = json.loads((out / "summary.json").read_text())
    assert (two["done"], two["skipped"], two["failed"], two["processes"]) == (6, 0, 0, 2)
    assert sorted(p["done"] for p in two["per_process"]) == [3, 3]
    for edit_id in ("e0", "e1", "e2", "e3", "e4", "e5"):
        pictures_two, record_two = results(out, edit_id)
        pictures_one, record_one = results(one_process_run, edit_id)
        assert len(pictures_two) == len(pictures_one) == (3 if edit_id == "e1" else 2)
        for a, b in zip(pictures_two, pictures_one, strict=True):
            assert np.array_equal(a, b)
        assert [r["score"] for r in record_two["results"]] == pytest.approx(
            [r["score"] for r in record_one["results"]], abs=1e-5
        )
    assert {p.name for p in out.iterdir()} == {"e0", "e1", "e2", "e3", "e4", "e5", "summary.json"}


def run_batch(workspace: Path, out: Path, manifest: str = "edits.jsonl", *options: str) -> int:
    """The batch in this process (one process: accelerate's state has no launcher here)."""
    return batch.main([str(workspace / manifest), "--out", str(out), "--model", str(workspace / "model"), *options])


def test_results_folder_holds_ranked_results_mask_and_record(workspace, tmp_path):
    assert run_batch(workspace, tmp_path, "edits.jsonl", *FAST, "--quiet") == 0
    pictures, record = results(tmp_path, "e0")
    assert [r["file"] for r in record["results"]] == ["0.png", "1.png"]
    assert record["results"][0]["score"] >= record["results"][1]["score"]
    assert (record["prompt"], record["seed"], record["num_inference_steps"], record["device"]) == (
        "a red ball",
        3,
        4,
        "cpu",
    )
    keep = np.asarray(PIL.Image.open(workspace / "mask.png")) == 0
    assert np.array_equal(pictures[0][keep], np.asarray(PIL.Image.open(workspace / "img0.png"))[keep])
    inverted = np.asarray(PIL.Image.open(tmp_path / "e2" / "mask.png")) > 127
    assert np.array_equal(inverted, keep)  # the background application edits all but the object
    assert results(tmp_path, "e4")[0][0].shape == (24, 48, 3)  # extended by 8 pixels on the right
    assert results(tmp_path, "e5")[1]["strength"] == 0.5
    assert results(tmp_path, "e3")[1]["application"] == "scribble"

    again = run_batch(workspace, tmp_path, "edits.jsonl", *FAST, "--quiet")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert again == 0 and (summary["done"], summary["skipped"]) == (0, 6)


def test_csv_manifest_with_the_same_columns(workspace, tmp_path):
    (workspace / "edits.csv").write_text(
        "id,image,mask,prompt,seed,samples,steps\n"
        "c0,img0.png,mask.png,a red ball,3,,\n"
        "c1,img1.png,mask.png,a blue square,,3,5\n"
    )
    assert run_batch(workspace, tmp_path, "edits.csv", *FAST, "--quiet") == 0
    c0, c1 = results(tmp_path, "c0")[1], results(tmp_path, "c1")[1]
    assert (c0["seed"], c0["num_images_per_prompt"]) == (3, 2)
    assert (c1["num_images_per_prompt"], c1["num_inference_steps"]) == (3, 5)


def test_a_ranking_clip_ranks_every_edit_and_is_recorded(workspace, tmp_path):
    (workspace / "one.csv").write_text("id,image,mask,prompt,seed\nr0,img0.png,mask.png,a red ball,3\n")
    ranking_clip = str(tmp_path / "ranking-clip")
    another_tiny_clip().save_pretrained(ranking_clip)
    assert run_batch(workspace, tmp_path / "own", "one.csv", *FAST, "--quiet") == 0
    assert run_batch(workspace, tmp_path / "ranked", "one.csv", *FAST, "--quiet", "--ranking-clip", ranking_clip) == 0
    own, ranked = results(tmp_path / "own", "r0")[1], results(tmp_path / "ranked", "r0")[1]
    assert ranked["ranking_clip"] == ranking_clip and "ranking_clip" not in own
    assert not np.allclose(sorted(r["score"] for r in own["results"]), sorted(r["score"] for r in ranked["results"]))


def test_bad_manifest_is_refused_before_any_work_with_every_bad_line_named(workspace, tmp_path, capsys):
    PIL.Image.new("L", (10, 30)).save(workspace / "tall-mask.png")
    lines = [
        '{"id": "ok", "image": "img0.png", "mask": "mask.png", "prompt": "a red ball"}',
        '{"id": "ok", "image": "img1.png", "mask": "mask.png", "prompt": "a red ball"}',
        '{"id": "b", "image": "missing.png", "mask": "mask.png", "prompt": "a red ball"}',
        '{"id": "c", "image": "img0.png", "mask": "mask.png", "prompt": "a red ball", "colour": "red"}',
        '{"id": "d", "image": "img0.png", "mask": "mask.png", "prompt": "a red ball", "steps": 0}',
        '{"id": "e", "image": "img0.png", "mask": "tall-mask.png", "prompt": "a red ball"}',
        '{"id": "f", "image": "img0.png", "mask": "mask.png", "prompt": "a red ball", "application": "paint"}',
        "not json",
        '{"id": "../g", "image": "img0.png", "mask": "mask.png", "prompt": "a red ball"}',
        '{"id": "h", "image": "img0.png", "prompt": "a red ball"}',
        '{"id": "i", "image": "img0.png", "mask": "mask.png", "prompt": "a red ball", "strength": "strong"}',
    ]
    (workspace / "bad.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code = run_batch(workspace, out, "bad.jsonl")
    err = capsys.readouterr().err
    assert code == 2
    named = {int(line.split("bad.jsonl:")[1].split(":")[0]) for line in err.splitlines() if "bad.jsonl:" in line}
    assert named == set(range(2, 12))
    for text in (
        "repeats line 1",
        "missing.png: no such file",
        "unknown field(s) colour",
        "steps must be an integer",
        "aspect ratio",
        "application 'paint'",
        "not JSON",
        "id '../g'",
        "needs a mask",
        "expected a float",
    ):
        assert text in err
    assert not out.exists()


def test_an_existing_folder_without_a_result_is_refused(workspace, tmp_path, capsys):
    (tmp_path / "e0").mkdir()
    code = run_batch(workspace, tmp_path)
    assert code == 2 and "holds no result.json" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e0"]


def test_a_failing_edit_is_recorded_and_the_others_complete(workspace, tmp_path):
    data = (workspace / "img0.png").read_bytes()
    (workspace / "truncated.png").write_bytes(data[: len(data) // 2])  # the header reads; the pixels do not
    lines = [
        {"id": "good", "image": "img0.png", "mask": "mask.png", "prompt": "a red ball"},
        {"id": "bad", "image": "truncated.png", "mask": "mask.png", "prompt": "a red ball"},
        {"id": "also-good", "image": "img1.png", "mask": "mask.png", "prompt": "a blue ball"},
    ]
    write_manifest(workspace / "failing.jsonl", lines)
    assert run_batch(workspace, tmp_path, "failing.jsonl", *FAST, "--quiet") == batch.FAILED
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [(e["id"], e["line"]) for e in errors] == [("bad", 2)] and "truncated.png" in errors[0]["reason"]
    assert (tmp_path / "good" / "result.json").is_file() and (tmp_path / "also-good" / "result.json").is_file()
    assert not (tmp_path / "bad").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (2, 1)


def bare_workers(workspace: Path, out: Path, manifest: str) -> list[tuple[int, str, str]]:
    """Two processes of one distributed run started without a launcher (which would hide their exit statuses)."""
    port = str(free_port())
    started = []
    for rank in (0, 1):
        environment = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
        environment |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            patch.delenv("PYTHONUNBUFFERED", raising=False)  # what the process prints must be flushed by itself
            started.append(launch(workspace, out, sys.executable, manifest=manifest))
    return [finished(process) for process in started]


def write_one_failing_manifest(workspace: Path) -> None:
    """``one-fails.jsonl``: a good edit, and one whose image is cut short past its header (it fails its edit)."""
    data = (workspace / "img0.png").read_bytes()
    (workspace / "cut.png").write_bytes(data[: len(data) // 2])
    lines = [
        {"id": "good", "image": "img0.png", "mask": "mask.png", "prompt": "a red ball"},
        {"id": "bad", "image": "cut.png", "mask": "mask.png", "prompt": "a red ball"},
    ]
    write_manifest(workspace / "one-fails.jsonl", lines)


def write_refused_manifest(workspace: Path) -> None:
    """``refused.jsonl``: one line, its image missing (the manifest is refused)."""
    write_manifest(
        workspace / "refused.jsonl", [{"id": "x", "image": "missing.png", "mask": "mask.png", "prompt": "a"}]
    )


def test_each_process_of_a_distributed_run_exits_with_the_batch_status_and_its_output_flushed(workspace, tmp_path):
    """A distributed run ends its processes without the interpreter's teardown: the status and what was printed
    must still come through."""
    write_one_failing_manifest(workspace)
    (main_code, printed, err), (other_code, _, _) = bare_workers(workspace, tmp_path / "out", "one-fails.jsonl")
    assert (main_code, other_code) == (batch.FAILED, batch.FAILED), err
    summary = json.loads(printed.strip().splitlines()[-1])
    assert (summary["done"], summary["failed"]) == (1, 1)

    write_refused_manifest(workspace)
    (main_code, _, err), (other_code, _, _) = bare_workers(workspace, tmp_path / "refused", "refused.jsonl")
    assert (main_code, other_code) == (2, 2) and "missing.png: no such file" in err


def test_own_workers_keep_the_statuses_and_a_refused_manifest_starts_none(workspace, tmp_path):
    """``--processes`` checks the manifest before it starts a worker, and its status is the batch's own: no
    launcher's traceback over the one-line errors."""
    write_refused_manifest(workspace)
    out = tmp_path / "refused"
    code, printed, err = finished(launch(workspace, out, *ONE_PROCESS, manifest="refused.jsonl", options=OWN_WORKERS))
    assert code == 2 and err.splitlines() == [
        f"blended-edit-batch: error: {workspace / 'refused.jsonl'}:1: image {workspace / 'missing.png'}: no such file"
    ]
    assert not out.exists() and not printed

    write_one_failing_manifest(workspace)
    out = tmp_path / "one-fails"
    code, printed, err = finished(launch(workspace, out, *ONE_PROCESS, manifest="one-fails.jsonl", options=OWN_WORKERS))
    assert code == batch.FAILED and "Traceback" not in err and "ended by" not in err, err
    assert json.loads(printed.strip().splitlines()[-1])["failed"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["processes"]) == (1, 1, 2)


def test_processes_is_refused_under_another_launcher(workspace, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert run_batch(workspace, tmp_path / "out", "edits.jsonl", "--processes", "2") == 2
    assert "--processes starts its own workers; drop it under accelerate launch" in capsys.readouterr().err
    assert run_batch(workspace, tmp_path / "out", "edits.jsonl", "--processes", "0") == 2
    assert "--processes must be >= 1, got 0" in capsys.readouterr().err


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the launcher's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the launcher's workers through /proc")
def slow_edits(prefix: str) -> list[dict]:
    """Eight slow edits (100 steps each), so that a kill lands mid-batch."""
    line = {"mask": "mask.png", "prompt": "a red ball", "steps": 100}
    return [{"id": f"{prefix}{i}", "image": f"img{i % 6}.png", **line} for i in range(8)]


def launched_until_a_result(
    workspace: Path, out: Path, manifest: str, how: str = "accelerate"
) -> tuple[subprocess.Popen, list[int]]:
    """A two-process run of ``manifest`` (by accelerate, or by ``--processes``), once its first edit is written,
    and its workers."""
    if how == "accelerate":
        launcher = launch(workspace, out, *two_processes(), manifest=manifest)
    else:
        launcher = launch(workspace, out, *ONE_PROCESS, manifest=manifest, options=OWN_WORKERS)
    deadline = time.monotonic() + 240
    while not any(out.glob("*/result.json")) and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = children(launcher.pid)
    assert workers, "the launcher started no workers"
    return launcher, workers


def test_killed_worker_then_rerun_completes_every_edit_exactly_once(workspace, tmp_path):
    lines = slow_edits("k")
    write_manifest(workspace / "slow.jsonl", lines)  # slow edits (100 steps): the kill lands mid-batch
    out = tmp_path / "out"
    launcher, workers = launched_until_a_result(workspace, out, "slow.jsonl")
    os.kill(workers[-1], signal.SIGKILL)
    code, _, _ = finished(launcher)
    assert code != 0
    first = {p.name: (p.stat().st_ino, (p / "result.json").read_text()) for p in out.glob("k*")}
    assert all((out / name / "result.json").is_file() for name in first)
    assert 0 < len(first) < 8, "the kill should land between the first and the last edit"

    code, _, err = finished(launch(workspace, out, *two_processes(), manifest="slow.jsonl"))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["skipped"], summary["failed"]) == (8 - len(first), len(first), 0)
    assert sorted(p.name for p in out.glob("k*")) == [f"k{i}" for i in range(8)]
    assert {name: (out / name).stat().st_ino for name in first} == {n: ino for n, (ino, _) in first.items()}
    assert all((out / name / "result.json").read_text() == text for name, (_, text) in first.items())
    assert not list(out.glob(".tmp-*")) and not (out / "errors.jsonl").exists()


def test_images_over_the_pixel_limit_are_refused_from_their_headers(workspace, tmp_path, capsys):
    assert run_batch(workspace, tmp_path / "out", "edits.jsonl", "--max-pixels", "500") == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 6 and all("more than --max-pixels 500 allows" in line for line in lines)
    assert "edits.jsonl:1: image" in lines[0] and "is 40x24 (960 pixels)" in lines[0]
    assert not (tmp_path / "out").exists()


def test_skip_invalid_runs_the_valid_lines_and_lists_the_refused_ones(workspace, tmp_path, capsys):
    lines = [
        {"id": "ok1", "image": "img1.png", "mask": "mask.png", "prompt": "a red ball"},
        {"id": "bad1", "image": "missing.png", "mask": "mask.png", "prompt": "a red ball"},
        {"id": "ok2", "image": "img2.png", "mask": "mask.png", "prompt": "a blue square"},
        {"id": "bad2", "image": "img0.png", "mask": "mask.png", "prompt": "a red ball", "steps": 0},
    ]
    write_manifest(workspace / "mixed.jsonl", lines)
    out = tmp_path / "out"
    assert run_batch(workspace, out, "mixed.jsonl", *FAST, "--quiet") == 2  # without the flag, nothing runs
    assert not out.exists()
    capsys.readouterr()
    assert run_batch(workspace, out, "mixed.jsonl", *FAST, "--quiet", "--skip-invalid") == 1
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["ok1", "ok2"]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["line"] for e in errors] == [2, 4]
    assert "missing.png: no such file" in errors[0]["reason"] and "steps must be" in errors[1]["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["refused"], summary["failed"]) == (2, 2, 0)


@pytest.mark.parametrize("how", ["accelerate", "--processes"])
def test_workers_end_with_a_launcher_killed_outright_and_a_rerun_completes_every_edit_once(workspace, tmp_path, how):
    lines = slow_edits("w")
    write_manifest(workspace / "launcher.jsonl", lines)
    out = tmp_path / "out"
    launcher, workers = launched_until_a_result(workspace, out, "launcher.jsonl", how)
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    _, err = launcher.communicate()
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers), "a worker outlived its launcher"
    first = {p.name for p in out.glob("w*")}
    assert 0 < len(first) < 8
    code, _, err = finished(launch(workspace, out, *two_processes(), manifest="launcher.jsonl"))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["skipped"]) == (8 - len(first), len(first))
    assert sorted(p.name for p in out.glob("w*")) == [f"w{i}" for i in range(8)] and not list(out.glob(".tmp-*"))


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie that only waits for its parent is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_a_diffusers_directory_of_another_family_runs_a_batch(workspace, tmp_path, family):
    from helpers import save_as_diffusers

    save_as_diffusers(family, tmp_path / family)
    (workspace / "one.jsonl").write_text(
        json.dumps({"id": "f0", "image": "img0.png", "mask": "mask.png", "prompt": "a red ball"}) + "\n"
    )
    out = tmp_path / "out"
    code = batch.main([str(workspace / "one.jsonl"), "--out", str(out), "--model", str(tmp_path / family), *FAST[:4]])
    assert code == 0
    pictures, record = results(out, "f0")
    assert [r["score"] for r in record["results"]] == ["not ranked", "not ranked"]
    keep = np.asarray(PIL.Image.open(workspace / "mask.png")) == 0
    assert np.array_equal(pictures[0][keep], np.asarray(PIL.Image.open(workspace / "img0.png"))[keep])
