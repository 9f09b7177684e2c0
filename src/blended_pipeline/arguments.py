"""Command-line options derived from the settings table, shared by ``blended-edit`` and ``blended-edit-batch``:
the model's options, each setting's option, and the settings a parsed command line asks for."""

from __future__ import annotations

import argparse
from typing import Any

from blended_pipeline import SHAPES_CHECKPOINT
from blended_pipeline.settings import BY_NAME, DTYPES, SETTINGS, EditSettings, Setting

MODEL_SETTINGS = ("scheduler", "mixed_precision")
"""Settings that go with the model (``add_model_options``) rather than with each edit."""
FLAGS = {setting.name: setting.flag for setting in SETTINGS if setting.flag}
"""Each setting's option, to name it in messages: ``num_inference_steps`` -> ``--steps``."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block), exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options that choose and place the model, and how the run reports."""
    parser.add_argument("--model", default=SHAPES_CHECKPOINT, help="pipeline directory or hub id (default: shapes)")
    parser.add_argument("--clip", help="separate CLIP checkpoint (directory or hub id) for a DDPM-only --model")
    parser.add_argument(
        "--ranking-clip",
        help="a second CLIP (directory or hub id; same image size and vocabulary as the model's) that ranks the "
        "results in place of the model's own, e.g. a larger one",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or mps (default: cuda when present)")
    for name in MODEL_SETTINGS:
        add_setting_option(parser, BY_NAME[name])
    parser.add_argument("--quiet", action="store_true", help="print only the written files (no progress)")


def add_edit_options(parser: argparse.ArgumentParser) -> None:
    """An option for each setting of one edit that has a flag (for a batch, the defaults of its lines)."""
    for setting in SETTINGS:
        if setting.flag and setting.name not in MODEL_SETTINGS:
            add_setting_option(parser, setting)


def add_setting_option(parser: argparse.ArgumentParser, setting: Setting) -> None:
    """``setting``'s option: its type, choices and help with its default and the models it applies to; the
    default is None, so that what was not given is known."""
    help_text = setting.help
    if setting.pipelines and len(setting.pipelines) == 1:
        help_text = f"{setting.pipelines[0]} models: {help_text}"
    if isinstance(setting.default, dict):
        default = ", ".join(f"{value:g} for {kind} models" for kind, value in setting.default.items())
    else:
        default = setting.default
    if setting.checkpoint:
        help_text += f" (default: the checkpoint's {setting.checkpoint}, else {default if default != '' else 'none'})"
    elif default is not None and setting.type is not bool:
        help_text += f" (default {default})"
    options: dict[str, Any] = dict(dest=setting.name, default=None, help=help_text.replace("%", "%%"))
    if setting.type is bool:
        options.update(action="store_const", const=not setting.flag.startswith("--no-"))
    elif setting.name == "mixed_precision":
        options.update(choices=tuple(DTYPES), type=str)
    else:
        options.update(type=setting.type, choices=setting.choices)
    parser.add_argument(setting.flag, **options)


def asked_settings(args: argparse.Namespace) -> Any:
    """The ``EditSettings`` a parsed command line asks for (None where an option was not given)."""
    values = {name: getattr(args, name, None) for name in FLAGS}
    if values["mixed_precision"] is not None:
        values["mixed_precision"] = DTYPES[values["mixed_precision"]]
    return EditSettings(**values)
