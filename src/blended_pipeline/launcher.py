"""The workers of a batch on one machine, and each worker's watch on what launched it.

``blended-edit-batch --processes N`` checks the manifest itself, then starts N copies of the command that meet as
torchrun's would (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...), so its exit status and its errors stay the
command's own: a launcher such as ``accelerate launch`` reports any worker's failure as its own (status 1 and a
traceback), which no worker can change. Under any launcher, a worker stops when its launcher is gone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

FAILED = 1  # exit status when some edits failed (the others are done)
WORKER_VARIABLE = "BLENDED_EDIT_BATCH_WORKER"
"""Set in the workers ``launch_workers`` starts: they run their share instead of launching again."""


def is_own_worker() -> bool:
    return WORKER_VARIABLE in os.environ


def under_other_launcher() -> bool:
    """True in a process that accelerate launch, torchrun or the like started."""
    return "LOCAL_RANK" in os.environ and not is_own_worker()


def launch_workers(count: int, arguments: Sequence[str], program: str = "blended-edit-batch") -> int:
    """Run ``python -m blended_pipeline.batch ARGUMENTS`` as ``count`` workers of one job on this machine.

    A worker that ends early (a crash, a signal) stops the others, which could only wait for it; SIGINT and
    SIGTERM are passed on. The status: 2 if a worker refused its input, 1 if any failed, else 0; a worker ended by
    a signal is named in one line.
    """
    environment = {
        **os.environ,
        WORKER_VARIABLE: str(os.getpid()),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "WORLD_SIZE": str(count),
        "LOCAL_WORLD_SIZE": str(count),
    }
    command = [sys.executable, "-m", "blended_pipeline.batch", *arguments]
    workers = [
        subprocess.Popen(command, env={**environment, "RANK": str(rank), "LOCAL_RANK": str(rank)})
        for rank in range(count)
    ]
    stopped_by: list[int] = []

    def pass_on(signum: int, frame: object) -> None:
        stopped_by.append(signum)
        _stop(workers)

    previous = {signum: signal.signal(signum, pass_on) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        statuses = _wait_all(workers)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stopped_by:
        name = signal.Signals(stopped_by[0]).name
        print(f"{program}: stopped by {name}; run the same command again to finish the edits", file=sys.stderr)
        return 128 + stopped_by[0]
    for rank, status in enumerate(statuses):
        if status < 0:
            print(
                f"{program}: error: process {rank} was ended by {signal.Signals(-status).name}; run the same "
                "command again to finish the edits",
                file=sys.stderr,
            )
    if 2 in statuses:
        return 2
    return FAILED if any(statuses) else 0


GRACE_SECONDS = 30.0
"""How long the others may take to end after one worker ends badly: a batch's workers leave together, each with
the batch's status, and one stopped while it tears down would be reported as killed."""


def _wait_all(workers: list[subprocess.Popen]) -> list[int]:
    """Every worker's exit status; a worker that ends badly stops the rest once they have had their grace."""
    failed_at = None
    while any(worker.poll() is None for worker in workers):
        if failed_at is None and any(worker.returncode not in (None, 0) for worker in workers):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
            _stop(workers)
        time.sleep(0.2)
    return [worker.returncode for worker in workers]


def _stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()


def _free_port() -> int:
    """A loopback port nobody listens on now, for the workers' rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def watch_launcher(launcher: int, process: int, program: str = "blended-edit-batch") -> None:
    """End this worker, saying so, when the process that launched it is gone: a launcher killed outright (SIGKILL)
    cannot stop its workers, and they must not go on editing and writing without it. An edit cut short leaves only
    a temporary folder, which the next run removes."""

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(1)
        print(
            f"{program}: process {process}: the launcher (pid {launcher}) is gone; stopping, the edits not "
            "finished are left for a rerun",
            file=sys.stderr,
            flush=True,
        )
        os._exit(FAILED)

    threading.Thread(target=watch, daemon=True, name="launcher-watch").start()
