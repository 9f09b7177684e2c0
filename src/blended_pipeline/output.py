"""Writing a run's outputs whole or not at all: every file under a temporary name first, renamed only when all
is written, with the permissions the umask gives; an earlier run's set is never mixed with a new one.

``OutputSet`` is ``blended-edit``'s files (the best result, its ranked siblings, the grid and the record);
``write_edit_folder`` is one edit of ``blended-edit-batch`` (a folder renamed into place, its completion marker
written last).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import PIL.Image

from blended_pipeline.settings import UsageError

NOT_RANKED = "not ranked"  # the score of a result that nothing ranked (a model without CLIP parts)
RESULT_FILE = "result.json"  # written last into an edit's folder, which is renamed into place: the completion marker
TEMPORARY_PREFIX = ".tmp-"  # an edit's folder while it is written; left only by a killed run, removed by the next


class OutputSet:
    """The files one run writes (the best result, its ranked siblings, the grid and the scores; with --demo also
    the input and the mask), claimed and checked before any work and written all at once.

    Use it as a context: while it is open the set is claimed (a lock held on a claim file beside it, which the
    system lets go of when the process ends, however it ends), so a second run on the same set is refused at once,
    ``--overwrite`` or not, and two runs never mix their files.
    """

    def __init__(self, best: Path, extras: tuple[str, ...], claim: Path, created: list[Path]) -> None:
        self.best, self.extras, self.claim, self.created = best, extras, claim, created
        self.scores = best.with_name(f"{best.stem}-scores.json")
        self._descriptor: int | None = None

    @classmethod
    def claimed(cls, out: Path, demo: bool, overwrite: bool) -> OutputSet:
        """Claim the set, or refuse, before any work: an output place that cannot be written, a set another run
        is writing, or one that holds an earlier run's files (unless ``overwrite``). ``out`` is the best result's
        file, or with ``demo`` the folder that holds the set (created here, and removed again if it stays
        empty)."""
        folder = out if demo else out.parent
        if demo and out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: exists and is not a directory; --demo writes a directory")
        if not demo and not folder.is_dir():
            raise UsageError(f"--out's directory {folder} does not exist")
        _check_writable(next(p for p in (folder, *folder.parents) if p.exists()))
        created = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        best = folder / "result.png" if demo else out
        outputs = cls(best, ("input", "mask") * demo, folder / f".{best.name}.claim", created)
        try:
            outputs._descriptor = _claim(outputs.claim, out)
            earlier = outputs.existing()
            if earlier and not overwrite:
                names = ", ".join(path.name for path in earlier[:3]) + (", ..." if len(earlier) > 3 else "")
                raise UsageError(
                    f"--out {out}: {len(earlier)} file(s) of an earlier run are there ({names}); "
                    "pass --overwrite to replace the whole set"
                )
        except BaseException:
            outputs.release()
            raise
        return outputs

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()

    def release(self) -> None:
        """Give the claim up (the claim file goes while the lock is still held), and the folders this run created
        for a set it did not write."""
        if self._descriptor is not None:
            self.claim.unlink(missing_ok=True)
            os.close(self._descriptor)
            self._descriptor = None
        for path in self.created:
            try:
                path.rmdir()
            except OSError:
                break

    def existing(self) -> list[Path]:
        """Files of this set already on disk, numbered siblings of any count included."""
        folder, stem = self.best.parent, self.best.stem
        if not folder.is_dir():
            return []
        named = [self.best, folder / f"{stem}-grid.png", self.scores]
        named += [folder / f"{extra}.png" for extra in self.extras]
        numbered = [p for p in folder.glob(f"{stem}-*.png") if p.stem[len(stem) + 1 :].isdigit()]
        return sorted({path for path in [*named, *numbered] if path.exists()})

    def write(
        self,
        image: PIL.Image.Image,
        mask: PIL.Image.Image,
        record: dict,
        results: list[PIL.Image.Image],
        scores: list[float] | None,
    ) -> list[Path]:
        """Everything to temporary names first, renamed only when all is written; with --overwrite the earlier
        set's files that this run does not write (more numbered results) are removed. ``record`` (the prompt and
        the settings) goes into the scores file beside the ranking (each score "not ranked" where ``scores`` is
        None: the results keep their generation order)."""
        folder, stem = self.best.parent, self.best.stem  # the folder exists: ``claimed`` made it
        files: dict[Path, PIL.Image.Image] = {}
        if self.extras:
            files = {folder / "input.png": image.convert("RGB"), folder / "mask.png": mask.convert("L")}
        files[self.best] = results[0]
        for rank, result in enumerate(results, start=1):
            files[folder / f"{stem}-{rank}.png"] = result
        files[folder / f"{stem}-grid.png"] = grid([image, mask, *results])
        scores = scores or [NOT_RANKED] * len(results)
        ranked = [{"rank": r, "file": f"{stem}-{r}.png", "score": s} for r, s in enumerate(scores, start=1)]
        scores_text = json.dumps({**record, "results": ranked}, indent=2)
        stale = [path for path in self.existing() if path not in files and path != self.scores]
        temporary: list[tuple[str, Path]] = []
        try:
            for path, picture in files.items():
                temporary.append((_temporary_name(path), path))
                picture.save(temporary[-1][0], format="PNG")
            temporary.append((_temporary_name(self.scores), self.scores))
            Path(temporary[-1][0]).write_text(scores_text)
        except BaseException:
            for name, _ in temporary:
                Path(name).unlink(missing_ok=True)
            raise
        permissions = 0o666 & ~current_umask()
        for name, path in temporary:
            os.chmod(name, permissions)
            os.replace(name, path)
        for path in stale:
            path.unlink(missing_ok=True)
        return [path for _, path in temporary]


def _claim(claim: Path, out: Path) -> int:
    """Lock ``claim`` (created if need be) and write this process's id in it; refuse when another process holds
    the lock. Returns the descriptor that holds it."""
    while True:
        descriptor = os.open(claim, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 32).decode(errors="replace").strip()
            os.close(descriptor)
            raise UsageError(
                f"--out {out}: another run{f' (process {holder})' if holder else ''} is writing this output set; "
                "wait for it to end or choose another --out"
            ) from None
        if claim.exists() and os.stat(claim).st_ino == os.fstat(descriptor).st_ino:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, str(os.getpid()).encode())
            return descriptor
        os.close(descriptor)  # the holder gave the claim up and removed it while this run waited: claim afresh


def _check_writable(folder: Path) -> None:
    """Create and remove a file in ``folder``: the one check a read-only or special filesystem cannot pass."""
    try:
        handle, name = tempfile.mkstemp(prefix=".blended-edit-", dir=folder)
        os.close(handle)
        os.unlink(name)
    except OSError as error:
        raise UsageError(f"--out: cannot write in {folder} ({error.strerror or error})") from error


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set back at once)."""
    current = os.umask(0)
    os.umask(current)
    return current


def grid(pictures: list[PIL.Image.Image], cell: int = 128) -> PIL.Image.Image:
    """Side by side, each scaled (nearest, so small images stay crisp) to ``cell`` pixels high."""
    scaled = [  # scaled first: a large picture is not copied whole
        p.resize((max(1, round(cell * p.width / p.height)), cell), PIL.Image.NEAREST).convert("RGB") for p in pictures
    ]
    canvas = PIL.Image.new("RGB", (sum(p.width for p in scaled) + 4 * (len(scaled) - 1), cell), (255, 255, 255))
    x = 0
    for picture in scaled:
        canvas.paste(picture, (x, 0))
        x += picture.width + 4
    return canvas


def _temporary_name(path: Path) -> str:
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return name


def write_edit_folder(
    out: Path,
    edit_id: str,
    mask: PIL.Image.Image,
    results: list[PIL.Image.Image],
    record: dict[str, Any],
    scores: list[float] | None,
) -> None:
    """``out/<edit_id>/``: ``0.png`` (best) onwards, ``mask.png`` and ``RESULT_FILE`` (``record`` with the
    results' files and scores), written in a hidden folder renamed into place, so it exists only complete."""
    folder = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{edit_id}-", dir=out))
    try:
        files = []
        for rank, (picture, score) in enumerate(zip(results, scores or [NOT_RANKED] * len(results), strict=True)):
            picture.save(folder / f"{rank}.png")
            files.append({"file": f"{rank}.png", "score": score})
        mask.convert("L").save(folder / "mask.png")
        (folder / RESULT_FILE).write_text(json.dumps({**record, "results": files}, indent=2))
        os.chmod(folder, 0o777 & ~current_umask())
        os.rename(folder, out / edit_id)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
