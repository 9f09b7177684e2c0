"""Converting guided-diffusion (ADM) checkpoints: layout, exact numerics of the tricky parts, the CLI, loading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from accelerate import init_empty_weights
from helpers import fast_call, tiny_clip_parts

from blended_pipeline import BlendedDiffusionPipeline
from blended_pipeline.convert_adm import ADMConfig, adm_layout, convert, main, scheduler_for, unet_for

TINY = dict(
    image_size=32,
    num_channels=32,
    num_res_blocks=1,
    channel_mult=(1, 2),
    attention_resolutions=(16,),
    num_head_channels=16,
)


TINY_FLAGS = [
    "--image-size",
    "32",
    "--num-channels",
    "32",
    "--num-res-blocks",
    "1",
    "--channel-mult",
    "1,2",
    "--attention-resolutions",
    "16",
    "--num-head-channels",
    "16",
]


def random_adm_state(config: ADMConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {adm: torch.randn(shape, generator=generator) * 0.2 for adm, _, shape in adm_layout(config)}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"resblock_updown": False},
        {"learn_sigma": False},
        {"use_scale_shift_norm": False},
        {"use_new_attention_order": True},
    ],
)
def test_every_key_consumed_and_counts_match(options):
    config = ADMConfig(**TINY, **options)
    state = random_adm_state(config)
    unet = convert(state, config)
    assert sum(p.numel() for p in unet.parameters()) == sum(t.numel() for t in state.values())
    assert unet.config.out_channels == (6 if config.learn_sigma else 3)


def test_full_256_configuration_matches_parameter_for_parameter():
    config = ADMConfig()
    with init_empty_weights():
        unet = unet_for(config)
    shapes = {name: tuple(p.shape) for name, p in unet.named_parameters()}
    expected = {}
    for _, ours, shape in adm_layout(config):
        if ".to_qkv." in ours:
            prefix, kind = ours.rsplit(".to_qkv.", 1)
            for name in ("to_q", "to_k", "to_v"):
                expected[f"{prefix}.{name}.{kind}"] = (shape[0] // 3, *shape[1:2])
        else:
            expected[ours] = shape[:2] if ours.endswith("to_out.0.weight") else shape
    assert expected == shapes
    assert sum(math.prod(s) for s in shapes.values()) == 552_814_086


def adm_attention(x, state, prefix, heads, new_order=False):
    """guided-diffusion's attention block, written from its published equations."""
    b, c, h, w = x.shape
    normed = F.group_norm(x.reshape(b, c, -1), 32, state[f"{prefix}.norm.weight"], state[f"{prefix}.norm.bias"])
    qkv = F.conv1d(normed, state[f"{prefix}.qkv.weight"], state[f"{prefix}.qkv.bias"])
    if new_order:
        q, k, v = (t.reshape(b * heads, c // heads, -1) for t in qkv.chunk(3, dim=1))
    else:
        q, k, v = qkv.reshape(b * heads, 3 * c // heads, -1).split(c // heads, dim=1)
    scale = 1 / math.sqrt(math.sqrt(c // heads))
    weights = torch.einsum("bct,bcs->bts", q * scale, k * scale).softmax(dim=-1)
    attended = torch.einsum("bts,bcs->bct", weights, v).reshape(b, c, -1)
    return x + F.conv1d(attended, state[f"{prefix}.proj_out.weight"], state[f"{prefix}.proj_out.bias"]).reshape(x.shape)


@pytest.mark.parametrize("new_order", [False, True])
def test_attention_split_is_numerically_exact(new_order):
    config = ADMConfig(**TINY, use_new_attention_order=new_order)
    state = random_adm_state(config)
    unet = convert(state, config).eval()
    x = torch.randn(2, 64, 4, 4)
    with torch.no_grad():
        ours = unet.mid_block.attentions[0](x)
    assert torch.allclose(ours, adm_attention(x, state, "middle_block.1", heads=4, new_order=new_order), atol=1e-5)
    # The legacy split read as the new order (or the reverse) runs but is wrong: only numbers catch it.
    assert not torch.allclose(
        ours, adm_attention(x, state, "middle_block.1", heads=4, new_order=not new_order), atol=1e-3
    )


def test_residual_block_and_time_embedding_are_numerically_exact():
    config = ADMConfig(**TINY)
    state = random_adm_state(config)
    unet = convert(state, config).eval()
    t = torch.tensor([0, 17, 999])
    half = 16
    frequencies = torch.exp(-math.log(10000) * torch.arange(half) / half)
    adm_sinusoid = torch.cat([torch.cos(t[:, None] * frequencies), torch.sin(t[:, None] * frequencies)], dim=1)
    assert torch.allclose(unet.time_proj(t), adm_sinusoid, atol=1e-5)
    emb = torch.randn(3, 128)
    x = torch.randn(3, 32, 8, 8)
    p = "input_blocks.3.0"  # level 1, first block: 32 -> 64 channels, with a skip convolution
    h = F.conv2d(
        F.silu(F.group_norm(x, 32, state[f"{p}.in_layers.0.weight"], state[f"{p}.in_layers.0.bias"])),
        state[f"{p}.in_layers.2.weight"],
        state[f"{p}.in_layers.2.bias"],
        padding=1,
    )
    scale, shift = F.linear(F.silu(emb), state[f"{p}.emb_layers.1.weight"], state[f"{p}.emb_layers.1.bias"]).chunk(2, 1)
    h = F.group_norm(h, 32, state[f"{p}.out_layers.0.weight"], state[f"{p}.out_layers.0.bias"])
    h = h * (1 + scale[..., None, None]) + shift[..., None, None]
    h = F.conv2d(F.silu(h), state[f"{p}.out_layers.3.weight"], state[f"{p}.out_layers.3.bias"], padding=1)
    expected = F.conv2d(x, state[f"{p}.skip_connection.weight"], state[f"{p}.skip_connection.bias"]) + h
    with torch.no_grad():
        ours = unet.down_blocks[1].resnets[0](x, emb)
    assert torch.allclose(ours, expected, atol=1e-4)


def test_scheduler_reproduces_adm_schedules():
    linear = scheduler_for(ADMConfig())
    assert torch.allclose(linear.betas, torch.linspace(1e-4, 0.02, 1000), atol=1e-8)
    assert linear.config.variance_type == "learned_range"
    cosine = scheduler_for(ADMConfig(noise_schedule="cosine", diffusion_steps=4000))
    steps = torch.arange(4001, dtype=torch.float64) / 4000
    alpha_bar = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = torch.clamp(1 - alpha_bar[1:] / alpha_bar[:-1], max=0.999)
    assert torch.allclose(cosine.betas.double(), betas, atol=1e-6)


def test_mismatched_flags_and_class_conditional_checkpoints_are_refused():
    config = ADMConfig(**TINY)
    state = random_adm_state(config)
    with pytest.raises(ValueError, match="keys missing"):
        convert(state, ADMConfig(**{**TINY, "num_res_blocks": 2}))
    with pytest.raises(ValueError, match="class-conditional"):
        convert({**state, "label_emb.weight": torch.zeros(1000, 128)}, config)


def test_cli_writes_a_directory_that_edits_through_the_pipeline(tmp_path, image, mask):
    config = ADMConfig(**TINY)
    checkpoint = tmp_path / "adm.pt"
    torch.save(random_adm_state(config), checkpoint)
    flags = TINY_FLAGS
    assert main([str(checkpoint), str(tmp_path / "converted"), *flags]) == 0
    pipe = BlendedDiffusionPipeline.from_pretrained(tmp_path / "converted", **tiny_clip_parts())
    pipe.set_progress_bar_config(disable=True)
    out = fast_call(pipe, image, mask)
    keep = np.asarray(mask) == 0
    source = np.asarray(image).astype(np.float32) / 255
    assert np.isfinite(out.images).all() and all(np.array_equal(r[keep], source[keep]) for r in out.images)
    assert main([str(checkpoint), str(tmp_path / "converted"), *flags]) == 2  # exists: refused
    assert main([str(tmp_path / "missing.pt"), str(tmp_path / "other"), *flags]) == 2


def test_converted_directory_edits_through_the_cli_with_a_separate_clip(tmp_path, image, mask):
    from blended_pipeline import cli

    config = ADMConfig(**TINY)
    torch.save(random_adm_state(config), tmp_path / "adm.pt")
    flags = TINY_FLAGS
    assert main([str(tmp_path / "adm.pt"), str(tmp_path / "converted"), *flags]) == 0
    clip_dir = tmp_path / "clip"
    for part in tiny_clip_parts().values():
        part.save_pretrained(clip_dir)
    image.save(tmp_path / "in.png")
    mask.save(tmp_path / "mask.png")
    code = cli.main(
        [
            "--model",
            str(tmp_path / "converted"),
            "--clip",
            str(clip_dir),
            "--image",
            str(tmp_path / "in.png"),
            "--mask",
            str(tmp_path / "mask.png"),
            "--prompt",
            "a red ball",
            "--out",
            str(tmp_path / "out.png"),
            "--steps",
            "4",
            "--samples",
            "2",
            "--augmentations",
            "2",
        ]
    )
    assert code == 0 and (tmp_path / "out.png").exists()
