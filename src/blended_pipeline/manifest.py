"""A batch's manifest: one edit a line (JSON Lines, or CSV with the same columns), read and checked in full.

Every line becomes the arguments of one ``blended-edit`` run (an ``argparse.Namespace`` with the command's
names), so a batch edit and a single edit go through the same preparation, settings and checks. Every problem
of every line is collected and reported with its line number before any work starts. No torch here.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL.Image

from blended_pipeline.applications import APPLICATIONS
from blended_pipeline.cli import EDIT_OPTIONS, checked_settings, pixels
from blended_pipeline.options import check_extension, check_image_size, check_mask_size, check_settings

FILE_FIELDS = ("image", "mask", "scribble")
FIELDS = ("id", "prompt", *FILE_FIELDS, "application", "extend")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RESULT_FILE = "result.json"  # written last into an edit's folder, which is renamed into place: the completion marker


class ManifestError(ValueError):
    """The manifest's problems, one line each: ``MANIFEST:LINE: what is wrong``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class ManifestEdit:
    """One line of the manifest: its number, its id and the ``blended-edit`` arguments it stands for."""

    line: int
    id: str
    application: str
    arguments: argparse.Namespace


def option_fields(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The per-edit options a manifest line may set, by field name: ``--guidance-scale`` -> ``guidance_scale``."""
    return {
        action.option_strings[0][2:].replace("-", "_"): action
        for action in parser._actions
        if action.option_strings and action.option_strings[0] in EDIT_OPTIONS
    }


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


def read_manifest(path: Path, defaults: argparse.Namespace, parser: argparse.ArgumentParser) -> list[ManifestEdit]:
    """Every edit of the manifest at ``path``, with ``defaults`` (the batch's options) where a line sets none.

    Raises ``ManifestError`` naming every bad line: unknown fields, duplicate ids, missing or unreadable files,
    masks of another aspect ratio, values out of range.
    """
    if not path.is_file():
        raise ManifestError([f"{path}: no such file"])
    fields = option_fields(parser)
    edits: list[ManifestEdit] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for number, row in read_rows(path):
        if isinstance(row, str):
            problems.append(f"{path}:{number}: {row}")
            continue
        try:
            edit = _edit(number, row, path.parent, defaults, fields)
        except ValueError as error:
            problems.append(f"{path}:{number}: {error}")
            continue
        if edit.id in first_line:
            problems.append(f"{path}:{number}: id {edit.id!r} repeats line {first_line[edit.id]}; ids must be unique")
            continue
        first_line[edit.id] = number
        edits.append(edit)
    if not problems and not edits:
        problems.append(f"{path}: no edits in the manifest")
    if problems:
        raise ManifestError(problems)
    return edits


def _edit(
    number: int, row: dict[str, Any], folder: Path, defaults: argparse.Namespace, fields: dict[str, argparse.Action]
) -> ManifestEdit:
    """One line as a ``ManifestEdit``; a ``ValueError`` lists everything wrong with it."""
    unknown = sorted(set(row) - set(FIELDS) - set(fields))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join((*FIELDS, *fields))}")
    problems: list[str] = []
    edit_id = str(row.get("id", ""))
    if isinstance(row.get("id"), bool) or not ID_PATTERN.fullmatch(edit_id):
        problems.append(
            f"id {row.get('id')!r}: expected 1-128 letters, digits, '.', '_' or '-', not starting with . _ -"
        )
    arguments = argparse.Namespace(**vars(defaults))
    arguments.prompt = row.get("prompt")
    for name, action in fields.items():
        if name in row:
            try:
                setattr(arguments, action.dest, _value(name, row[name], action))
            except ValueError as error:
                problems.append(str(error))
    for name in FILE_FIELDS:
        setattr(arguments, name, folder / str(row[name]) if name in row else None)
    application = row.get("application") or (
        "scribble" if "scribble" in row else "extend" if "extend" in row else "edit"
    )
    arguments.invert_mask = application == "background"
    arguments.extend = None
    if application not in APPLICATIONS:
        problems.append(f"application {application!r}: expected one of {', '.join(APPLICATIONS)}")
    else:
        problems += _application_problems(application, row, arguments)
    if not problems:
        try:
            names = {action.dest: name for name, action in fields.items()}
            check_settings(names, **checked_settings(arguments))
        except ValueError as error:
            problems.append(str(error))
    if not problems:
        problems += _file_problems(arguments)
    if problems:
        raise ValueError("; ".join(problems))
    return ManifestEdit(number, edit_id, application, arguments)


def _value(name: str, value: Any, action: argparse.Action) -> Any:
    """A field's value as its option's type: CSV cells are text; JSON numbers are taken as they are."""
    kind = action.type or str
    if isinstance(value, str) and kind is not str:
        try:
            value = kind(value)
        except ValueError as error:
            raise ValueError(f"{name} {value!r}: expected a {kind.__name__}") from error
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} {value!r}: expected an integer")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"{name} {value!r}: expected a number")
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{name} {value!r}: expected one of {', '.join(action.choices)}")
    return float(value) if kind is float else value


def _application_problems(application: str, row: dict[str, Any], arguments: argparse.Namespace) -> list[str]:
    """The fields each application needs and refuses; sets ``arguments.extend``."""
    needs = {"edit": ("mask",), "background": ("mask",), "scribble": ("scribble",), "extend": ("extend",)}
    refuses = {
        "edit": ("scribble", "extend"),
        "background": ("scribble", "extend"),
        "scribble": ("extend",),
        "extend": ("mask", "scribble"),
    }
    problems = [
        f"application {application} needs a {name}" for name in ("image", *needs[application]) if name not in row
    ]
    problems += [f"application {application} takes no {name}" for name in refuses[application] if name in row]
    if arguments.prompt is None:
        problems.append("no prompt")
    if "extend" in row and application == "extend":
        extend = row["extend"]
        try:
            if isinstance(extend, list) and len(extend) == 4 and all(type(v) is int and v >= 0 for v in extend):
                arguments.extend = tuple(extend)
            else:
                arguments.extend = pixels(str(extend))
        except argparse.ArgumentTypeError as error:
            problems.append(f"extend: {error}")
    return problems


def _file_problems(arguments: argparse.Namespace) -> list[str]:
    """Each file exists and is an image (its header is read, not its pixels) of a size the edit can use."""
    sizes: dict[str, tuple[int, int]] = {}
    problems = []
    for name in FILE_FIELDS:
        path = getattr(arguments, name)
        if path is None:
            continue
        if not path.is_file():
            problems.append(f"{name} {path}: no such file")
            continue
        try:
            with PIL.Image.open(path) as image:
                sizes[name] = image.size
        except (OSError, SyntaxError, ValueError):
            problems.append(f"{name} {path}: not an image PIL can read")
    if "image" not in sizes:
        return problems
    width, height = sizes["image"]
    try:
        check_image_size(width, height, f"image {arguments.image}")
        if arguments.extend:
            check_extension(width, height, *arguments.extend, "extend")
    except ValueError as error:
        problems.append(str(error))
    if "mask" in sizes:
        try:
            check_mask_size(*sizes["mask"], width, height, f"mask {arguments.mask}")
        except ValueError as error:
            problems.append(str(error))
    if "scribble" in sizes and sizes["scribble"] != sizes["image"]:
        problems.append(f"scribble {arguments.scribble} is {sizes['scribble']}, image {sizes['image']}: one size")
    return problems
