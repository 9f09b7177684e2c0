"""Loading a pipeline for the front ends: the device, the checkpoint directory and its kind, a separate or a
ranking CLIP, a scheduler by name. Everything that needs no weights is checked before anything loads."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from blended_pipeline import SHAPES_CHECKPOINT, SHAPES_LATENT_CHECKPOINT
from blended_pipeline.families import family_of, kind_of
from blended_pipeline.settings import UsageError


def resolve_device(text: str) -> str:
    """``text`` as a torch device string that is present here; "auto" is cuda when present, else cpu."""
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"--device {text}: not a device torch knows; use cpu, cuda, cuda:N or mps") from error
    present = {
        "cpu": True,
        "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
        "mps": torch.backends.mps.is_available(),
    }
    if not present.get(device.type, False):
        raise UsageError(f"--device {text}: no such device here; use cpu" + (" or cuda" * torch.cuda.is_available()))
    return str(device)


def check_model_directory(model: str, flag: str = "--model", needs: str = "model_index.json") -> None:
    """A local checkpoint directory has the file that describes it and, for a pipeline, every component folder
    its model_index.json names; anything else that looks like a path must exist. Hub ids pass (read at load)."""
    path = Path(model)
    if not path.exists():
        if path.is_absolute() or model.startswith(".") or model.count("/") > 1:
            raise UsageError(f"{flag} {model}: no such directory (and not a hub id, which reads owner/name)")
        return
    if not (path / needs).is_file():
        raise UsageError(f"{flag} {model}: no {needs} there; give a diffusers/transformers checkpoint directory")
    if needs == "model_index.json":
        for name, entry in read_json(path / needs, flag, model).items():
            if isinstance(entry, list) and entry[0] is not None and not (path / name).is_dir():
                raise UsageError(f"{flag} {model}: model_index.json names {name!r} but {path / name} is missing")


def read_json(path: Path, flag: str, model: str) -> dict:
    """A checkpoint's JSON file, refused in one line naming it when it is not a JSON object."""
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{flag} {model}: {path} is not valid JSON ({error})") from error
    if not isinstance(content, dict):
        raise UsageError(f"{flag} {model}: {path} holds a {type(content).__name__}, not a JSON object")
    return content


def trained_steps(model: str) -> int | None:
    """The timesteps the scheduler of a local checkpoint was trained with, from its config; None where unknown."""
    path = Path(model) / "scheduler" / "scheduler_config.json"
    return read_json(path, "--model", model).get("num_train_timesteps") if path.is_file() else None


def model_kind(model: str) -> str:
    """ "latent" for a latent diffusion checkpoint of a known family, else "pixel" (``model_family``)."""
    return kind_of(model_family(model))


def model_family(model: str) -> str:
    """``model``'s family ("pixel", "sd", "sdxl", "sd3", "flux": ``families.family_of``), read from the
    directory's (or the hub repository's) model_index.json before anything loads."""
    path = Path(model) / "model_index.json"
    if path.is_file():
        index = read_json(path, "--model", model)
    else:
        from diffusers import DiffusionPipeline

        try:
            index = DiffusionPipeline.load_config(model)
        except (OSError, ValueError) as error:
            raise UsageError(
                f"--model {model}: cannot read its model_index.json ({str(error).splitlines()[0]})"
            ) from error
    try:
        return family_of(index)
    except ValueError as error:
        raise UsageError(f"--model {model}: {error}") from error


def check_clip_options(clip: str | None, ranking_clip: str | None) -> None:
    """Refuse a ``--clip`` or ``--ranking-clip`` that is not a CLIP checkpoint."""
    if clip:
        check_model_directory(clip, "--clip", "config.json")
    if ranking_clip:
        check_model_directory(ranking_clip, "--ranking-clip", "config.json")


def load_pipeline(
    model: str, device: str, clip: str | None = None, ranking_clip: str | None = None, mixed_precision: str = "no"
) -> Any:
    """The pipeline of ``model``'s kind (pixel or latent), with a separate CLIP's parts and a ranking CLIP when
    given, on ``device``, running in ``mixed_precision`` unless a call asks otherwise (a request's scheduler is
    swapped in by ``request.run_edit``)."""
    import diffusers
    import transformers
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from blended_pipeline.pipeline import BlendedDiffusionPipeline
    from blended_pipeline.pipeline_latent import BlendedLatentDiffusionPipeline

    diffusers.utils.logging.disable_progress_bar()  # the denoising bar stays; loading bars are noise
    transformers.utils.logging.disable_progress_bar()
    latent = model_kind(model) == "latent"
    clip_parts = {}
    if clip:
        try:
            clip_parts = {
                "clip_model": CLIPModel.from_pretrained(clip),
                "clip_tokenizer" if latent else "tokenizer": CLIPTokenizer.from_pretrained(clip),
                "feature_extractor": CLIPImageProcessor.from_pretrained(clip),
            }
        except (OSError, ValueError) as error:
            raise UsageError(f"--clip {clip}: cannot load a CLIP ({str(error).splitlines()[0]})") from error
    pipeline_class = BlendedLatentDiffusionPipeline if latent else BlendedDiffusionPipeline
    try:
        pipe = pipeline_class.from_pretrained(model, **clip_parts)
    except (OSError, ValueError, TypeError) as error:
        raise UsageError(f"--model {model}: cannot load a pipeline ({str(error).splitlines()[0]})") from error
    if ranking_clip:
        pipe.register_modules(ranking_clip_model=load_ranking_clip(ranking_clip, pipe.clip_model))
    pipe.default_mixed_precision = mixed_precision
    return pipe.to(device)


def load_ranking_clip(ranking_clip: str, clip_model: Any) -> Any:
    """The CLIP at ``ranking_clip``, refused when it cannot read what the guiding CLIP's preprocessing makes."""
    from transformers import CLIPModel

    from blended_pipeline.loop import check_ranking_clip

    if clip_model is None:
        raise UsageError(f"--ranking-clip {ranking_clip}: the model has no CLIP whose tokenizer it could share")
    try:
        ranking_clip_model = CLIPModel.from_pretrained(ranking_clip)
        check_ranking_clip(ranking_clip_model, clip_model)
    except (OSError, ValueError) as error:
        raise UsageError(f"--ranking-clip {ranking_clip}: {str(error).splitlines()[0]}") from error
    return ranking_clip_model


def warn_about_unknown_words(pipe: Any, prompt: str, program: str) -> None:
    """The shapes models know a closed vocabulary: name the words they never saw."""
    from blended_pipeline.shapes.tokenizer import unknown_words
    from blended_pipeline.shapes.world import VOCABULARY

    shapes = {Path(SHAPES_CHECKPOINT).resolve(), Path(SHAPES_LATENT_CHECKPOINT).resolve()}
    if Path(str(pipe.name_or_path)).resolve() in shapes:
        unknown = unknown_words(prompt, VOCABULARY)
        if unknown:
            print(f"{program}: warning: the shapes model does not know {', '.join(unknown)}", file=sys.stderr)
