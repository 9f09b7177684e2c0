"""The package's layers (docs/architecture.md): a module imports only from its own layer or those below, and no
front end imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import blended_pipeline

PACKAGE = Path(blended_pipeline.__file__).parent
LAYERS = {
    "pieces": {
        "settings",
        "region",
        "blending",
        "guidance",
        "augment",
        "ranking",
        "rivals",
        "denoiser_vote",
        "restart",
        "reconstruction",
        "image_io",
        "text_encoding",
        "applications",
        "shapes.world",
        "shapes.edits",
        "shapes.tokenizer",
    },
    "loop": {
        "loop",
        "families",
        "pipeline",
        "pipeline_latent",
        "pipeline_sdxl",
        "pipeline_sd3",
        "pipeline_flux",
        "convert_adm",
    },
    "application": {"request", "loading", "output", "arguments", "manifest", "launcher"},
    "front ends": {"cli", "batch", "ui"},
    "shapes": {
        "shapes.train_clip",
        "shapes.train_unet",
        "shapes.train_latent_unet",
        "shapes.train_vae",
        "shapes.training_utils",
        "shapes.export",
        "shapes.judge",
    },
}
ORDER = list(LAYERS)
FRONT_ENDS = LAYERS["front ends"]


def layer_of(module: str) -> str:
    return next(layer for layer, members in LAYERS.items() if module in members)


def imports_of(path: Path) -> set[str]:
    """The package's modules that the file at ``path`` imports (at any depth of the code), relative names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("blended_pipeline"):
            inner = node.module.removeprefix("blended_pipeline").lstrip(".")
            found |= {inner} if inner else {alias.name for alias in node.names if alias.name in MODULES}
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("blended_pipeline.") for a in node.names if a.name.startswith("blended_pipeline.")
            }
    return found


MODULES = {p.stem for p in PACKAGE.glob("*.py")} | {f"shapes.{p.stem}" for p in PACKAGE.glob("shapes/*.py")}
MODULES -= {"__init__", "shapes.__init__"}


def test_every_module_has_a_layer():
    assert MODULES == set().union(*LAYERS.values())


def test_imports_only_go_down_and_front_ends_stand_alone():
    wrong = []
    for path in [*PACKAGE.glob("*.py"), *PACKAGE.glob("shapes/*.py")]:
        if path.stem == "__init__":
            continue
        own = layer_of(f"shapes.{path.stem}" if path.parent.name == "shapes" else path.stem)
        for imported in imports_of(path):
            theirs = layer_of(imported)
            if ORDER.index(theirs) > ORDER.index(own) or (own == theirs == "front ends"):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {imported} ({theirs})")
    assert not wrong, wrong
