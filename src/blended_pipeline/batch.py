"""``blended-edit-batch``: run a manifest of edits, spread over processes, GPUs and machines by accelerate.

    blended-edit-batch edits.jsonl --out results/                                   # one process
    blended-edit-batch edits.jsonl --out results/ --processes 4                     # four, on this machine
    accelerate launch --multi_gpu --num_processes 4 -m blended_pipeline.batch edits.jsonl --out results/

The main process reads and checks the whole manifest before any work (every bad line is named, exit status 2;
with --skip-invalid the valid lines run and the bad ones are listed in ``OUT/errors.jsonl``), leaves out the edits
already done, and deals the rest to the processes in turn; each process loads the model once and edits its share.
Each edit's results land in ``OUT/<id>/`` (``0.png`` best, ``mask.png``, ``result.json``), written in a hidden
temporary folder and renamed into place: a folder exists only complete, so a killed batch run again finishes
every edit exactly once. A failing edit is recorded in ``OUT/errors.jsonl`` and the batch goes on (exit status
1 at the end); ``OUT/summary.json`` counts what was done. See docs/batch.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blended_pipeline.arguments import FLAGS, OneLineParser, add_edit_options, add_model_options, asked_settings
from blended_pipeline.families import kind_of
from blended_pipeline.launcher import FAILED, is_own_worker, launch_workers, under_other_launcher, watch_launcher
from blended_pipeline.loading import (
    check_clip_options,
    check_model_directory,
    load_pipeline,
    model_family,
    resolve_device,
    trained_steps,
)
from blended_pipeline.manifest import ManifestEdit, ManifestError, read_manifest
from blended_pipeline.output import RESULT_FILE, TEMPORARY_PREFIX, write_edit_folder
from blended_pipeline.request import EditRequest, run_edit
from blended_pipeline.settings import InputWarning, UsageError, check_settings

if TYPE_CHECKING:
    from accelerate import PartialState

    from blended_pipeline.pipeline import BlendedDiffusionPipeline


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="blended-edit-batch", description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="JSON Lines (or .csv): id, image, mask, prompt[, options] a line")
    parser.add_argument("--out", type=Path, required=True, help="output directory: OUT/<id>/ for each edit")
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="run the manifest's valid lines and list the refused ones in OUT/errors.jsonl (exit status 1)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes on this machine, started by the command once the manifest is checked (one per GPU; "
        "on a CPU give each OMP_NUM_THREADS=1)",
    )
    add_model_options(parser)
    add_edit_options(parser)  # the batch's defaults; a manifest line may set its own
    return parser


@dataclass
class Plan:
    """What the main process decided and every process follows."""

    todo: list[ManifestEdit]
    skipped: int
    run: str  # when the run started (UTC) and the main process's id: tells this run's lines in errors.jsonl
    refused: int = 0  # the manifest's lines refused with --skip-invalid


@dataclass
class ProcessReport:
    process: int
    device: str
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0


def main(argv: Sequence[str] | None = None) -> int:
    launcher = os.getppid()  # before any rendezvous: a launcher that dies meanwhile must still be noticed
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_settings(FLAGS, **dataclasses.asdict(asked_settings(args)))
        if args.out.exists() and not args.out.is_dir():
            raise UsageError(f"--out {args.out}: exists and is not a directory")
        if args.processes < 1:
            raise UsageError(f"--processes must be >= 1, got {args.processes}")
        if args.processes > 1 and under_other_launcher():
            raise UsageError("--processes starts its own workers; drop it under accelerate launch or torchrun")
        if args.processes > 1 and not is_own_worker():
            checked_edits(args)  # a refused manifest: one line per bad line, exit 2, and no worker started
            return launch_workers(args.processes, sys.argv[1:] if argv is None else argv)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputWarning)  # per-edit warnings would flood a long batch
            return run(args, launcher)
    except ManifestError as error:
        for problem in error.problems:
            print(f"blended-edit-batch: error: {problem}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as error:
        print(f"blended-edit-batch: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, launcher: int) -> int:
    import torch
    from accelerate import PartialState

    # gloo on a CPU-only machine: a plain PartialState() there would give every process the whole manifest.
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes > 1 and launcher != 1:
        watch_launcher(launcher, state.process_index)
    try:
        code = edit_manifest(state, args)
        state.wait_for_everyone()  # no process leaves while another still talks to it
    finally:
        state.destroy_process_group()
    if state.num_processes > 1:
        leave_now(code)
    return code


def leave_now(code: int) -> None:
    """End a process of a distributed run without the interpreter's teardown: gloo's threads can abort it there
    (SIGABRT, "terminate called without an active exception", seen twice in CI's two-process runs; pytorch/pytorch
    PR 179291 describes the cause). Every file is written and closed by now; only the standard streams need
    flushing."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def edit_manifest(state: PartialState, args: argparse.Namespace) -> int:
    from accelerate.utils import broadcast_object_list, gather_object

    started = time.perf_counter()
    shared: list[Plan | list[str] | None] = [None]
    if state.is_main_process:
        try:
            shared[0] = plan(args)
        except ManifestError as error:
            shared[0] = error.problems
        except UsageError as error:
            shared[0] = [str(error)]
    broadcast_object_list(shared)
    decided = shared[0]
    if not isinstance(decided, Plan):
        if state.is_main_process:
            for problem in decided:
                print(f"blended-edit-batch: error: {problem}", file=sys.stderr)
        return 2

    device = str(state.device) if args.device == "auto" else resolve_device(args.device)
    report = ProcessReport(process=state.process_index, device=device)
    pipe = load(args, device, report)
    progress = None
    if state.is_main_process and not args.quiet:
        progress = Progress(args.out, [edit.id for edit in decided.todo], decided.run)
        progress.start()
    for edit in decided.todo[state.process_index :: state.num_processes]:  # dealt in turn: even when edits differ
        edit_and_record(pipe, edit, args, decided.run, report)
    report.seconds = time.perf_counter() - started - report.load_seconds
    reports = gather_object([report])
    if progress:
        progress.stop()
    if state.is_main_process:
        summary = write_summary(args.out, decided, reports, time.perf_counter() - started)
        print(json.dumps({key: summary[key] for key in ("done", "skipped", "failed", "refused", "edits_per_second")}))
    failed = sum(r.failed for r in reports)
    return FAILED if failed or decided.refused else 0


def checked_edits(args: argparse.Namespace) -> tuple[list[ManifestEdit], list[tuple[int, str]]]:
    """The manifest's edits that the model can run and its refused lines (line, reason), having written nothing;
    a ``ManifestError`` naming every bad line unless ``--skip-invalid`` leaves edits to run."""
    check_model_directory(args.model)
    family, steps = model_family(args.model), trained_steps(args.model)
    kind = kind_of(family)
    defaults = asked_settings(args)  # the batch's own options: every line's defaults
    EditRequest(None, None, settings=defaults, names=FLAGS).check_for(kind, f"--model {args.model}", steps, family)
    try:
        edits, refused = read_manifest(args.manifest, defaults), []
    except ManifestError as error:
        if not (args.skip_invalid and error.edits):
            raise
        edits, refused = error.edits, error.refused
    for edit in list(edits):
        try:
            edit.request.check_for(kind, f"--model {args.model}", steps, family)
        except UsageError as error:
            refused.append((edit.line, str(error)))
            edits.remove(edit)
    if refused and not (args.skip_invalid and edits):
        raise ManifestError([f"{args.manifest}:{line}: {reason}" for line, reason in sorted(refused)])
    check_clip_options(args.clip, args.ranking_clip)
    return edits, refused


def plan(args: argparse.Namespace) -> Plan:
    """Check the manifest and the model, clear what a killed run left, and list the edits still to do."""
    edits, refused = checked_edits(args)
    args.out.mkdir(parents=True, exist_ok=True)
    for leftover in args.out.glob(f"{TEMPORARY_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    incomplete = [e for e in edits if (args.out / e.id).exists() and not (args.out / e.id / RESULT_FILE).is_file()]
    if incomplete:
        raise ManifestError(
            [
                f"{args.manifest}:{e.line}: {args.out / e.id} exists but holds no {RESULT_FILE} (not written by this "
                "command); remove it or choose another --out"
                for e in incomplete
            ]
        )
    todo = [edit for edit in edits if not (args.out / edit.id).exists()]
    run = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f"-{os.getpid()}"
    for line, reason in sorted(refused):
        append_line(args.out / "errors.jsonl", {"line": line, "reason": f"refused: {reason}", "run": run})
    return Plan(todo=todo, skipped=len(edits) - len(todo), run=run, refused=len(refused))


def load(args: argparse.Namespace, device: str, report: ProcessReport) -> BlendedDiffusionPipeline:
    start = time.perf_counter()
    precision = asked_settings(args).mixed_precision or "no"
    pipe = load_pipeline(args.model, device, args.clip, args.ranking_clip, precision)
    pipe.set_progress_bar_config(disable=True)  # the batch's own bar counts edits
    report.load_seconds = time.perf_counter() - start
    return pipe


def edit_and_record(
    pipe: BlendedDiffusionPipeline, edit: ManifestEdit, args: argparse.Namespace, run: str, report: ProcessReport
) -> None:
    """One edit into ``OUT/<id>/``; a failure goes to ``OUT/errors.jsonl`` and the batch goes on."""
    out = args.out
    try:
        write_edit(pipe, edit, args, report)
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of one edit is recorded; the others go on
        reason = f"{type(error).__name__}: {' '.join(str(error).split())}"
        line = {"id": edit.id, "line": edit.line, "reason": reason, "run": run, "process": report.process}
        append_line(out / "errors.jsonl", line)
        report.failed += 1
        return
    report.done += 1


def write_edit(
    pipe: BlendedDiffusionPipeline, edit: ManifestEdit, args: argparse.Namespace, report: ProcessReport
) -> None:
    start = time.perf_counter()
    request = edit.request
    result = run_edit(pipe, request)
    files = {name: str(getattr(request, name)) for name in ("image", "mask", "scribble") if getattr(request, name)}
    record = {
        "id": edit.id,
        "prompt": request.prompt,
        "application": request.application,
        **files,
        "extend": request.extend,
        **result.record(args.model, args.ranking_clip),
        "seconds": round(time.perf_counter() - start, 3),
        "device": report.device,
        "process": report.process,
    }
    write_edit_folder(args.out, edit.id, result.mask, result.images, record, result.scores)


def append_line(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, appended in a single write (processes share the file)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        os.write(descriptor, (json.dumps(record) + "\n").encode())
    finally:
        os.close(descriptor)


def write_summary(out: Path, decided: Plan, reports: list[ProcessReport], seconds: float) -> dict[str, Any]:
    done, failed = sum(r.done for r in reports), sum(r.failed for r in reports)
    summary = {
        "run": decided.run,
        "done": done,
        "skipped": decided.skipped,
        "failed": failed,
        "refused": decided.refused,
        "processes": len(reports),
        "seconds": round(seconds, 3),
        "edits_per_second": round(done / seconds, 4) if seconds else None,
        "per_process": [
            {
                **asdict(r),
                "seconds": round(r.seconds, 3),
                "load_seconds": round(r.load_seconds, 3),
                "edits_per_second": round(r.done / r.seconds, 4) if r.seconds else None,
            }
            for r in reports
        ],
    }
    temporary = out / f"{TEMPORARY_PREFIX}summary.json"
    temporary.write_text(json.dumps(summary, indent=2))
    os.replace(temporary, out / "summary.json")
    return summary


class Progress:
    """A bar on the main process that counts the edits finished by every process: it watches ``out`` for the
    edits' folders and ``errors.jsonl`` for this run's failures (no collective call, so no process waits)."""

    def __init__(self, out: Path, ids: list[str], run: str) -> None:
        from tqdm.auto import tqdm

        self.out, self.ids, self.run = out, set(ids), run
        self.bar = tqdm(total=len(ids), desc="edits", unit="edit", file=sys.stderr)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
            self._update()
        self.bar.close()

    def _watch(self) -> None:
        while not self.stopped.wait(1.0):
            self._update()

    def _update(self) -> None:
        finished = len(self.ids.intersection(os.listdir(self.out)))
        errors = self.out / "errors.jsonl"
        if errors.exists():
            records = [json.loads(line) for line in errors.read_text().splitlines() if line.strip()]
            finished += sum(r.get("run") == self.run and r.get("id") in self.ids for r in records)
        self.bar.n = finished
        self.bar.refresh()


if __name__ == "__main__":
    sys.exit(main())
