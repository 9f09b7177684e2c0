"""A batch's manifest: one edit a line (JSON Lines, or CSV with the same columns), read and checked in full.

Every line becomes an ``EditRequest``, the same a single ``blended-edit`` run makes, so a batch edit and a single
edit go through the same application rules, settings and checks; a line's settings are the table's per-edit
settings, named by their option (``--guidance-scale`` -> ``guidance_scale``). Every problem of every line is
collected and reported with its line number before any work starts. No torch here.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blended_pipeline.request import EditRequest, check_pixels, image_header
from blended_pipeline.settings import SETTINGS, Setting, UsageError, check_extension, check_image_size, check_mask_size

FILE_FIELDS = ("image", "mask", "scribble")
FIELDS = ("id", "prompt", *FILE_FIELDS, "application", "extend")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SETTING_FIELDS: dict[str, Setting] = {s.manifest_field: s for s in SETTINGS if s.flag and s.per_edit}
"""The settings a line may set, by field name."""
NAMES = {setting.name: field for field, setting in SETTING_FIELDS.items()}


class ManifestError(ValueError):
    """The manifest's problems, one line each: ``MANIFEST:LINE: what is wrong``; ``refused`` the bad lines as
    (line number, what is wrong) and ``edits`` the good ones, for a batch that runs what it can."""

    def __init__(
        self, problems: list[str], refused: list[tuple[int, str]] | None = None, edits: list | None = None
    ) -> None:
        super().__init__("\n".join(problems))
        self.problems, self.refused, self.edits = problems, refused or [], edits or []


@dataclass
class ManifestEdit:
    """One line of the manifest: its number, its id and the request it stands for."""

    line: int
    id: str
    request: EditRequest


def read_rows(path: Path) -> list[tuple[int, dict[str, Any] | str]]:
    """``(line number, row)`` for every edit in the file; a row that cannot be parsed is a message instead."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        return [
            (reader.line_num, {key: value for key, value in row.items() if key and value not in (None, "")})
            for row in reader
        ]
    rows: list[tuple[int, dict[str, Any] | str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            rows.append((number, f"not JSON ({error.msg} at column {error.colno})"))
            continue
        rows.append((number, row if isinstance(row, dict) else f"expected a JSON object, got {type(row).__name__}"))
    return rows


def read_manifest(path: Path, defaults: Any) -> list[ManifestEdit]:
    """Every edit of the manifest at ``path``, with ``defaults`` (the batch's ``EditSettings``) where a line sets
    none.

    Raises ``ManifestError`` naming every bad line: unknown fields, duplicate ids, missing or unreadable files,
    masks of another aspect ratio, values out of range.
    """
    if not path.is_file():
        raise ManifestError([f"{path}: no such file"])
    edits: list[ManifestEdit] = []
    refused: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    for number, row in read_rows(path):
        if isinstance(row, str):
            refused.append((number, row))
            continue
        try:
            edit = _edit(number, row, path.parent, defaults)
        except ValueError as error:
            refused.append((number, str(error)))
            continue
        if edit.id in first_line:
            refused.append((number, f"id {edit.id!r} repeats line {first_line[edit.id]}; ids must be unique"))
            continue
        first_line[edit.id] = number
        edits.append(edit)
    if refused or not edits:
        problems = [f"{path}:{number}: {reason}" for number, reason in refused] or [f"{path}: no edits in the manifest"]
        raise ManifestError(problems, refused, edits)
    return edits


def _edit(number: int, row: dict[str, Any], folder: Path, defaults: Any) -> ManifestEdit:
    """One line as a ``ManifestEdit``; a ``ValueError`` lists everything wrong with it."""
    unknown = sorted(set(row) - set(FIELDS) - set(SETTING_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join((*FIELDS, *SETTING_FIELDS))}")
    problems: list[str] = []
    edit_id = str(row.get("id", ""))
    if isinstance(row.get("id"), bool) or not ID_PATTERN.fullmatch(edit_id):
        problems.append(
            f"id {row.get('id')!r}: expected 1-128 letters, digits, '.', '_' or '-', not starting with . _ -"
        )
    settings = {}
    for name, setting in SETTING_FIELDS.items():
        if name in row:
            try:
                settings[setting.name] = _value(name, row[name], setting)
            except ValueError as error:
                problems.append(str(error))
    files = {name: folder / str(row[name]) if name in row else None for name in FILE_FIELDS}
    application = row.get("application") or (
        "scribble" if "scribble" in row else "extend" if "extend" in row else "edit"
    )
    extend = None
    if "extend" in row:
        try:
            extend = _extend(row["extend"])
        except ValueError as error:
            problems.append(f"extend: {error}")
    request = EditRequest(
        row.get("prompt"),
        **files,
        application=application,
        extend=extend,
        settings=dataclasses.replace(defaults, **settings),
        names=NAMES,
    )
    if not problems:
        try:
            request.check()
        except UsageError as error:
            problems.append(str(error))
    if not problems:
        problems += _file_problems(request)
    if problems:
        raise ValueError("; ".join(problems))
    return ManifestEdit(number, edit_id, request)


def _value(name: str, value: Any, setting: Setting) -> Any:
    """A field's value as its setting's type: CSV cells are text; JSON numbers are taken as they are."""
    expected = setting.type
    if isinstance(value, str) and expected is not str:
        try:
            value = expected(value)
        except ValueError as error:
            raise ValueError(f"{name} {value!r}: expected a {expected.__name__}") from error
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} {value!r}: expected an integer")
    if expected is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"{name} {value!r}: expected a number")
    if setting.choices is not None and value not in setting.choices:
        raise ValueError(f"{name} {value!r}: expected one of {', '.join(setting.choices)}")
    return float(value) if expected is float else value


def _extend(value: Any) -> tuple[int, int, int, int]:
    """LEFT,TOP,RIGHT,BOTTOM from a list of four integers or text."""
    if isinstance(value, list) and len(value) == 4 and all(type(v) is int and v >= 0 for v in value):
        return tuple(value)
    parts = str(value).split(",")
    if len(parts) != 4 or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"expected LEFT,TOP,RIGHT,BOTTOM as four non-negative integers, got {str(value)!r}")
    return tuple(int(part) for part in parts)


def _file_problems(request: EditRequest) -> list[str]:
    """Each file exists and is an image (its header is read, not its pixels) of a size the edit can use."""
    sizes: dict[str, tuple[int, int]] = {}
    problems = []
    for name in FILE_FIELDS:
        path = getattr(request, name)
        if path is None:
            continue
        try:
            with image_header(path, name) as image:
                check_pixels(*image.size, request.value("max_pixels"), f"{name} {path}", "--max-pixels")
                sizes[name] = image.size
        except UsageError as error:
            problems.append(str(error))
        except (OSError, SyntaxError, ValueError):
            problems.append(f"{name} {path}: not an image PIL can read")
    if "image" not in sizes:
        return problems
    width, height = sizes["image"]
    try:
        check_image_size(width, height, f"image {request.image}")
        if request.extend:
            check_extension(width, height, *request.extend, "extend")
    except ValueError as error:
        problems.append(str(error))
    if "mask" in sizes:
        try:
            check_mask_size(*sizes["mask"], width, height, f"mask {request.mask}")
        except ValueError as error:
            problems.append(str(error))
    if "scribble" in sizes and sizes["scribble"] != sizes["image"]:
        problems.append(f"scribble {request.scribble} is {sizes['scribble']}, image {sizes['image']}: one size")
    return problems
