"""Model families: each family's pipeline equals diffusers' own inpaint pipeline of that family when this
project's extras are off, loads from the directories diffusers writes, and refuses what it cannot edit with.

The equality is the proof that conditioning, guidance and schedules are right on real checkpoints, which cannot
be downloaded here. What it needs, on either side:
- one result, no CLIP parts (no ranking), ``reconstruction="none"`` (no final paste: diffusers returns the
  decoder's pixels), ``latent_mask="nearest"`` (diffusers' nearest resize of the binarized mask), and
  ``blend_noise="initial"`` (diffusers blends with the start's noise at every step; the paper draws fresh noise);
- an image at the model's resolution (diffusers resizes with its own filter) and a strength whose steps both
  sides round alike;
- diffusers encodes the input by sampling the VAE's posterior, this project by its mean: the test VAE's posterior
  has a standard deviation of exp(-15), so the sample is the mean within 1e-6, and the test draws the sample's
  noise from our generator first, as diffusers does before its initial noise;
- diffusers 0.42's SD3 inpaint pipeline decodes without adding the VAE's ``shift_factor`` back (its encode
  subtracts it; diffusers issue 13611): the SD3 comparison runs on a VAE whose shift is 0, and
  ``test_encode_and_decode_undo_each_other_with_a_shift`` checks this project's decode with one.
"""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from helpers import (
    DIFFUSERS_PIPELINES,
    TINY_PARTS,
    save_as_diffusers,
    tiny_flux_parts,
    tiny_latent_parts,
    tiny_sd3_parts,
    tiny_sdxl_parts,
)

from blended_pipeline import BlendedLatentDiffusionPipeline
from blended_pipeline.families import family_of, latent_pipeline_class
from blended_pipeline.pipeline_sdxl import BlendedLatentDiffusionXLPipeline

EXTRAS_OFF = dict(
    num_images_per_prompt=1,
    latent_mask="nearest",
    reconstruction="none",
    blend_noise="initial",
    restart_at=0.0,
    rank_border_weight=0.0,
)


def near_deterministic(vae):
    """``vae`` with a posterior standard deviation of exp(-15): its sample is its mean within 1e-6."""
    channels, moments = vae.config.latent_channels, vae.quant_conv or vae.encoder.conv_out
    with torch.no_grad():
        moments.weight[channels:] = 0
        moments.bias[channels:] = -30
    return vae


def model_sized_inputs() -> tuple[PIL.Image.Image, PIL.Image.Image]:
    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 6:14] = 255
    return image, PIL.Image.fromarray(mask)


CASES = {
    "sd": dict(),
    "sdxl": dict(),
    "sdxl, a negative prompt": dict(negative_prompt="a blue ball"),
    "sdxl refiner (the second encoder only, aesthetic scores)": dict(refiner=True),
    "sd3": dict(),
    "sd3 at strength 1": dict(strength=1.0),
    "sd3 without T5": dict(with_t5=False),
    "flux dev (guidance-distilled)": dict(),
    "flux dev at strength 1": dict(strength=1.0),
    "flux schnell (no guidance input)": dict(guidance_embeds=False),
}
REFERENCES = {
    "sd": "StableDiffusionInpaintPipeline",
    "sdxl": "StableDiffusionXLInpaintPipeline",
    "sd3": "StableDiffusion3InpaintPipeline",
    "flux": "FluxInpaintPipeline",
}


@pytest.mark.parametrize("case", CASES)
def test_with_the_extras_off_each_family_equals_diffusers_inpaint_pipeline(case):
    import diffusers

    family = case.split(",")[0].split(" ")[0]
    options = dict(CASES[case])
    refiner, with_t5 = options.pop("refiner", False), options.pop("with_t5", True)
    guidance_embeds = options.pop("guidance_embeds", True)
    config = {"requires_aesthetics_score": refiner} if family == "sdxl" else {}
    parts = {
        "sd": tiny_latent_parts,
        "sdxl": lambda: tiny_sdxl_parts(refiner),
        "sd3": lambda: tiny_sd3_parts(with_t5),
        "flux": lambda: tiny_flux_parts(guidance_embeds),
    }[family]()
    near_deterministic(parts["vae"])
    if family == "sd":  # diffusers' SD inpaint pipeline sets steps_offset=1 on the scheduler it is given
        parts["scheduler"] = type(parts["scheduler"]).from_config({**parts["scheduler"].config, "steps_offset": 1})
    if family == "sd3":  # diffusers' SD3 inpaint decode leaves the shift out (see above)
        parts["vae"].register_to_config(shift_factor=0.0)
    components = {name: parts[name] for name in DIFFUSERS_PIPELINES[family][1]}
    extra = {
        "sd": dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False),
        "sdxl": dict(add_watermarker=False),
    }.get(family, {})
    reference = getattr(diffusers, REFERENCES[family])(**components, **config, **extra)
    ours = latent_pipeline_class(family)(**components, **config)
    for pipe in (reference, ours):
        pipe.set_progress_bar_config(disable=True)
    image, mask = model_sized_inputs()
    call = dict(prompt="a red ball", image=image, mask_image=mask, num_inference_steps=10, strength=0.5)
    call.update(guidance_scale=7.5, output_type="np", **options)
    size = dict(height=16, width=16) if family == "flux" else {}  # diffusers' Flux size is fixed, 128 cells
    expected = reference(**call, **size, generator=torch.Generator().manual_seed(0)).images
    generator = torch.Generator().manual_seed(0)
    torch.randn((1, parts["vae"].config.latent_channels, 8, 8), generator=generator)  # diffusers' posterior sample
    got = ours(**call, **EXTRAS_OFF, generator=generator).images
    assert got.shape == expected.shape == (1, 16, 16, 3)
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(expected - np.asarray(image) / 255).max() > 0.1  # an edit, not the input


@pytest.mark.parametrize(
    ("family", "writer"),
    [
        ("sd", "StableDiffusionPipeline"),
        ("sd", "StableDiffusionInpaintPipeline"),
        ("sdxl", "StableDiffusionXLPipeline"),
        ("sdxl", "StableDiffusionXLInpaintPipeline"),
        ("sdxl", "StableDiffusionXLImg2ImgPipeline"),
        ("sd3", "StableDiffusion3Pipeline"),
        ("sd3", "StableDiffusion3InpaintPipeline"),
        ("sd3", "StableDiffusion3Img2ImgPipeline"),
        ("flux", "FluxPipeline"),
        ("flux", "FluxInpaintPipeline"),
        ("flux", "FluxImg2ImgPipeline"),
    ],
)
def test_a_directory_written_by_diffusers_loads_its_family_and_edits(tmp_path, image, mask, family, writer):
    save_as_diffusers(family, tmp_path, writer)
    pipe = BlendedLatentDiffusionPipeline.from_pretrained(tmp_path)
    assert type(pipe) is latent_pipeline_class(family)
    assert set(pipe.components) == set(type(pipe)._get_signature_keys(pipe)[0]) | set(pipe._optional_components)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red ball", image, mask, num_inference_steps=4, num_images_per_prompt=2)
    keep = np.asarray(mask) == 0
    assert out.scores is None and len(out.images) == 2
    assert all(np.array_equal(np.asarray(p)[keep], np.asarray(image)[keep]) for p in out.images)


def test_an_sdxl_refiner_directory_loads_and_edits(tmp_path, image, mask):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    parts = tiny_sdxl_parts(refiner=True)
    names = DIFFUSERS_PIPELINES["sdxl"][1]
    StableDiffusionXLImg2ImgPipeline(**{n: parts[n] for n in names}, requires_aesthetics_score=True).save_pretrained(
        tmp_path
    )
    pipe = BlendedLatentDiffusionPipeline.from_pretrained(tmp_path)
    assert type(pipe) is BlendedLatentDiffusionXLPipeline and pipe.text_encoder is None
    assert pipe.config.requires_aesthetics_score and len(pipe._time_ids()[0]) == 5
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red ball", image, mask, num_inference_steps=4)
    keep = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(out.images[0])[keep], np.asarray(image)[keep])


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_an_inpainting_unet_is_refused_naming_the_base_model(family):
    from diffusers import UNet2DConditionModel

    parts = TINY_PARTS[family]()
    unet = UNet2DConditionModel.from_config({**parts["unet"].config, "in_channels": 9})
    base = "stable-diffusion-v1-5/stable-diffusion-v1-5" if family == "sd" else "stable-diffusion-xl-base-1.0"
    with pytest.raises(ValueError, match=f"9 input channels: it is an inpainting model's.*{base}"):
        latent_pipeline_class(family)(**{**parts, "unet": unet})


def test_an_inpainting_transformer_is_refused_naming_the_base_model():
    from diffusers import SD3Transformer2DModel

    parts = tiny_sd3_parts()
    transformer = SD3Transformer2DModel.from_config({**parts["transformer"].config, "in_channels": 33})
    with pytest.raises(ValueError, match="takes 33 input channels.*stable-diffusion-3.5-medium"):
        latent_pipeline_class("sd3")(**{**parts, "transformer": transformer})


def test_a_flux_fill_transformer_is_refused_and_a_negative_prompt_too(image, mask):
    from diffusers import FluxTransformer2DModel

    parts = tiny_flux_parts()
    fill = FluxTransformer2DModel.from_config({**parts["transformer"].config, "in_channels": 384})
    with pytest.raises(ValueError, match="takes 384 input channels.*FLUX.1-dev"):
        latent_pipeline_class("flux")(**{**parts, "transformer": fill})
    pipe = latent_pipeline_class("flux")(**parts)
    with pytest.raises(ValueError, match="negative_prompt needs classifier-free guidance"):
        pipe("a red ball", image, mask, negative_prompt="a blue ball", num_inference_steps=4)


def test_encode_and_decode_undo_each_other_with_a_shift():
    pipe = latent_pipeline_class("sd3")(**tiny_sd3_parts())
    assert pipe.vae.config.shift_factor != 0
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    mean = pipe.vae.encode(images).latent_dist.mean
    latents = pipe._encode(images)
    config = pipe.vae.config
    assert torch.allclose(latents, (mean - config.shift_factor) * config.scaling_factor, atol=1e-6)
    assert torch.allclose(pipe._decode(latents), pipe.vae.decode(mean).sample, atol=1e-5)


def test_the_family_is_read_from_the_components_a_directory_names():
    clip = ["transformers", "CLIPTextModel"]
    assert family_of({"unet": ["diffusers", "UNet2DModel"]}) == "pixel"
    assert family_of({"unet": ["diffusers", "UNet2DConditionModel"], "text_encoder": clip}) == "sd"
    refiner = {"text_encoder": [None, None], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]}
    assert family_of({"unet": ["diffusers", "UNet2DConditionModel"], **refiner}) == "sdxl"
    assert family_of({"transformer": ["diffusers", "SD3Transformer2DModel"]}) == "sd3"
    assert family_of({"transformer": ["diffusers", "FluxTransformer2DModel"]}) == "flux"
    with pytest.raises(ValueError, match="its transformer is a HunyuanDiT2DModel"):
        family_of({"transformer": ["diffusers", "HunyuanDiT2DModel"]})


def test_the_cli_refuses_a_model_of_no_known_family_before_loading(tmp_path, capsys):
    from blended_pipeline import cli

    (tmp_path / "model_index.json").write_text(json.dumps({"transformer": ["diffusers", "HunyuanDiT2DModel"]}))
    (tmp_path / "transformer").mkdir()
    PIL.Image.new("RGB", (16, 16)).save(tmp_path / "in.png")
    PIL.Image.new("L", (16, 16), 255).save(tmp_path / "mask.png")
    arguments = ["--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--prompt", "a ball"]
    assert cli.main([*arguments, "--model", str(tmp_path), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "its transformer is a HunyuanDiT2DModel; blended editing knows SD3Transformer2DModel" in err


@pytest.mark.parametrize("family", list(TINY_PARTS))
def test_the_offload_sequence_names_the_family_components_in_order(family):
    """``enable_model_cpu_offload`` (it needs a GPU; not run here) moves the models in this order: each must be
    a component, the denoiser last before the VAE, and the ranking CLIPs stay where they are."""
    pipe = latent_pipeline_class(family)(**TINY_PARTS[family]())
    sequence = pipe.model_cpu_offload_seq.split("->")
    assert set(sequence) <= set(pipe.components) and sequence[-1] == "vae"
    assert pipe.components[sequence[-2]] is pipe.denoiser
    assert set(pipe._exclude_from_cpu_offload) == {"clip_model", "ranking_clip_model"}


def test_a_scheduler_of_the_other_kind_is_refused_before_any_work(image, mask):
    from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

    sd3 = latent_pipeline_class("sd3")(**tiny_sd3_parts())
    sd3.scheduler = DDIMScheduler.from_config(sd3.scheduler.config)
    with pytest.raises(ValueError, match="DDIMScheduler does not fit a sd3 model, which needs a flow-matching"):
        sd3("a red ball", image, mask, num_inference_steps=4)
    sd = latent_pipeline_class("sd")(**tiny_latent_parts())
    sd.scheduler = FlowMatchEulerDiscreteScheduler()
    with pytest.raises(ValueError, match="does not fit a sd model, which needs a noise-prediction scheduler"):
        sd("a red ball", image, mask, num_inference_steps=4)


@pytest.mark.parametrize(
    ("family", "options", "message"),
    [
        ("sd3", ["--scheduler", "ddim"], "--scheduler ddim does not fit"),
        ("flux", ["--scheduler", "euler"], "a flux model is flow matching and keeps its own scheduler"),
        ("flux", ["--negative-prompt", "a blue ball"], "--negative-prompt needs classifier-free guidance"),
    ],
)
def test_the_cli_refuses_what_a_family_cannot_run_before_loading(
    tmp_path, capsys, monkeypatch, family, options, message
):
    from blended_pipeline import cli

    save_as_diffusers(family, tmp_path / family)
    capsys.readouterr()  # what saving printed (transformers' progress bars) is not the command's
    monkeypatch.setattr(cli, "load_pipeline", lambda *_: pytest.fail("the model loaded"))
    PIL.Image.new("RGB", (16, 16)).save(tmp_path / "in.png")
    PIL.Image.new("L", (16, 16), 255).save(tmp_path / "mask.png")
    arguments = ["--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--prompt", "a ball"]
    assert cli.main([*arguments, "--model", str(tmp_path / family), "--out", str(tmp_path / "o.png"), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
