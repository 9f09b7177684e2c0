"""What the tests share: tiny random components built locally (no hub), cheap calls, recording callbacks and
edits whose outcome is known without running a model. Plain functions and classes; the fixtures in ``conftest.py``
call them, and test files import them from here (``from helpers import ...``)."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DModel
from diffusers.callbacks import PipelineCallback
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from blended_pipeline import BlendedDiffusionPipeline
from blended_pipeline.shapes.tokenizer import build_tokenizer

WORDS = ("a", "red", "blue", "ball", "circle", "square", "background")


def tiny_unet(out_channels: int = 3, sample_size: int = 16) -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=3,
        out_channels=out_channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8,
    )


def tiny_clip_parts() -> dict:
    torch.manual_seed(0)
    tokenizer = build_tokenizer(WORDS, max_length=8)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=8,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            image_size=16,
            patch_size=4,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
        ),
        projection_dim=8,
    )
    feature_extractor = CLIPImageProcessor(
        size={"shortest_edge": 16},
        crop_size={"height": 16, "width": 16},
        image_mean=[0.5, 0.4, 0.3],
        image_std=[0.25, 0.3, 0.35],
    )
    return dict(clip_model=CLIPModel(config).eval(), tokenizer=tokenizer, feature_extractor=feature_extractor)


def ranking_parts(clip: dict) -> dict:
    """A latent pipeline's optional CLIP parts, from ``tiny_clip_parts``' output."""
    return dict(
        clip_model=clip["clip_model"], clip_tokenizer=clip["tokenizer"], feature_extractor=clip["feature_extractor"]
    )


def another_tiny_clip(image_size: int = 16) -> CLIPModel:
    """The tiny CLIP with other weights (and, if asked, another image size): at 16 pixels it reads what the tiny
    tokenizer and feature extractor make, so it can rank in place of the tiny pipeline's own."""
    config = tiny_clip_parts()["clip_model"].config
    config.vision_config.image_size = image_size
    torch.manual_seed(1)
    return CLIPModel(config).eval()


def tiny_pipeline(out_channels: int = 3, **scheduler_config) -> BlendedDiffusionPipeline:
    scheduler = DDPMScheduler(num_train_timesteps=100, **scheduler_config)
    pipe = BlendedDiffusionPipeline(unet=tiny_unet(out_channels).eval(), scheduler=scheduler, **tiny_clip_parts())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def fast_call(pipe: BlendedDiffusionPipeline, image, mask_image, **kwargs):
    """A cheap call: few steps, two results, two views; anything may be overridden."""
    arguments = dict(
        prompt="a red ball",
        image=image,
        mask_image=mask_image,
        num_inference_steps=4,
        strength=1.0,
        num_images_per_prompt=2,
        num_augmentations=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    arguments.update(kwargs)
    return pipe(**arguments)


def tiny_vae(latent_channels: int = 4, **config) -> AutoencoderKL:
    """A tiny VAE: 16 px to 8x8 latents of ``latent_channels``."""
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=16,
        **config,
    )
    return vae.eval()


def tiny_text_unet(**config) -> torch.nn.Module:
    """A tiny text-conditioned UNet on 8x8x4 latents."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=4,
        norm_num_groups=4,
        **config,
    )


def tiny_latent_parts() -> dict:
    """A tiny Stable Diffusion: a VAE (16 px to 8x8x4), a CLIP text encoder and a text-conditioned UNet."""
    from diffusers import DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    vae = tiny_vae()
    clip = tiny_clip_parts()
    text_encoder = CLIPTextModel(CLIPTextConfig(**clip["clip_model"].config.text_config.to_dict()))
    unet = tiny_text_unet(cross_attention_dim=16)
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="scaled_linear", clip_sample=False)
    return dict(
        vae=vae,
        text_encoder=text_encoder.eval(),
        tokenizer=clip["tokenizer"],
        unet=unet.eval(),
        scheduler=scheduler,
        **ranking_parts(clip),
    )


def tiny_sdxl_parts(refiner: bool = False) -> dict:
    """A tiny Stable Diffusion XL: the tiny VAE, two CLIP text encoders (the second with a projection), a UNet
    with SDXL's added time conditioning, Euler; and the CLIP parts that rank. A ``refiner`` has the second encoder
    only and aesthetic scores in its time ids."""
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vae = tiny_vae()
    clip = tiny_clip_parts()
    text = {**clip["clip_model"].config.text_config.to_dict(), "num_hidden_layers": 2}
    text_encoder = CLIPTextModel(CLIPTextConfig(**text))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**{**text, "projection_dim": 8}))
    time_ids = 5 if refiner else 6
    unet = tiny_text_unet(
        cross_attention_dim=16 if refiner else 32,  # the encoders' hidden states side by side
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=4 * time_ids + 8,
    )
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=100, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    return dict(
        vae=vae,
        text_encoder=None if refiner else text_encoder.eval(),
        tokenizer=None if refiner else clip["tokenizer"],
        text_encoder_2=text_encoder_2.eval(),
        tokenizer_2=clip["tokenizer"],
        unet=unet.eval(),
        scheduler=scheduler,
        **ranking_parts(clip),
    )


def tiny_latent_pipeline(with_clip: bool = True, family: str = "sd", **config):
    """A latent pipeline of ``family`` (``TINY_PARTS``: sd, sdxl, sd3, flux) on tiny random components, with a
    checkpoint's ``config`` (``default_...``) if given."""
    from blended_pipeline.families import latent_pipeline_class

    parts = TINY_PARTS[family]()
    if not with_clip:
        parts.update(clip_model=None, clip_tokenizer=None, feature_extractor=None)
    pipe = latent_pipeline_class(family)(**parts, **config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def images(batch: int = 2, size: int = 16) -> torch.Tensor:
    """Random images in [-1, 1], the same at every call."""
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


class Recorder(PipelineCallback):
    """Records a copy of the tensors it is handed at every step."""

    tensor_inputs = ["latents", "noised_image", "mask", "image"]

    def __init__(self):
        super().__init__()
        self.seen = []

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        self.seen.append({k: v.clone() for k, v in callback_kwargs.items()})
        return callback_kwargs


class StepLatents(PipelineCallback):
    """Records the latents it is handed at every step, and what the pipeline's ranking makes of ``x0_hat`` there."""

    tensor_inputs = ["latents", "pred_original_sample", "mask", "image"]

    def __init__(self) -> None:
        super().__init__(cutoff_step_ratio=1.0)
        self.seen: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.best: list[int] = []

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        self.seen.append(callback_kwargs["latents"].clone())
        mask = callback_kwargs["mask"]
        self.masks.append(mask)
        pasted = callback_kwargs["pred_original_sample"].clamp(-1, 1) * mask + callback_kwargs["image"] * (1 - mask)
        self.best.append(int(pipeline.ranking(pasted, mask)[0][0]))
        return callback_kwargs


def tiny_t5() -> tuple:
    """A T5 tokenizer (a Unigram model over the shapes words) and a tiny T5 encoder, built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    vocabulary = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *[(f"\u2581{word}", -1.0) for word in WORDS]]
    model = Tokenizer(models.Unigram(vocabulary, unk_id=2))
    model.pre_tokenizer, model.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tokenizer = T5TokenizerFast(tokenizer_object=model, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(vocabulary), d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    return tokenizer, T5EncoderModel(config).eval()


def tiny_sd3_parts(with_t5: bool = True) -> dict:
    """A tiny Stable Diffusion 3: a 16-channel VAE with a shift factor, two CLIP text encoders with projections,
    an optional T5, a transformer (patch size 1) and a flow-matching scheduler (shift 3); and the CLIP parts that
    rank."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    vae = tiny_vae(16, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.06, scaling_factor=1.5)
    clip = tiny_clip_parts()
    text = {**clip["clip_model"].config.text_config.to_dict(), "num_hidden_layers": 2, "projection_dim": 8}
    encoders = [CLIPTextModelWithProjection(CLIPTextConfig(**text)).eval() for _ in range(2)]
    tokenizer_3, text_encoder_3 = tiny_t5() if with_t5 else (None, None)
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=1,
        in_channels=16,
        out_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,  # T5's width, and more than both CLIP encoders' (16 + 16)
        caption_projection_dim=16,
        pooled_projection_dim=16,  # both CLIP projections (8 + 8)
        pos_embed_max_size=8,
    )
    return dict(
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=encoders[0],
        tokenizer=clip["tokenizer"],
        text_encoder_2=encoders[1],
        tokenizer_2=clip["tokenizer"],
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
        **ranking_parts(clip),
    )


def tiny_flux_parts(guidance_embeds: bool = True) -> dict:
    """A tiny Flux.1: a 16-channel VAE with a shift factor, CLIP (pooled) and T5 text encoders, a transformer
    (patch size 1, on 2x2 packed latents; guidance-distilled like dev, or not like schnell) and a flow-matching
    scheduler with dynamic shifting; and the CLIP parts that rank."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    vae = tiny_vae(16, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1, scaling_factor=0.4)
    clip = tiny_clip_parts()
    text_encoder = CLIPTextModel(CLIPTextConfig(**clip["clip_model"].config.text_config.to_dict())).eval()
    tokenizer_2, text_encoder_2 = tiny_t5()
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 2x2 patches of 16 channels
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # T5's width
        pooled_projection_dim=16,  # CLIP's
        axes_dims_rope=(4, 4, 8),
        guidance_embeds=guidance_embeds,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)
    return dict(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip["tokenizer"],
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer.eval(),
        **ranking_parts(clip),
    )


DIFFUSERS_PIPELINES = {
    "sd": ("StableDiffusionPipeline", ("vae", "text_encoder", "tokenizer", "unet", "scheduler")),
    "sdxl": (
        "StableDiffusionXLPipeline",
        ("vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "unet", "scheduler"),
    ),
    "sd3": (
        "StableDiffusion3Pipeline",
        (
            "transformer",
            "scheduler",
            "vae",
            "text_encoder",
            "tokenizer",
            "text_encoder_2",
            "tokenizer_2",
            "text_encoder_3",
            "tokenizer_3",
        ),
    ),
    "flux": (
        "FluxPipeline",
        ("scheduler", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "transformer"),
    ),
}
"""Each family's diffusers text-to-image pipeline and the components it saves."""


def save_as_diffusers(family: str, path, pipeline: str | None = None) -> dict:
    """The tiny components of ``family`` saved by diffusers' own ``pipeline`` (default: its text-to-image one), as
    a user's download is laid out (no CLIP parts); returns the components."""
    import diffusers

    name, names = DIFFUSERS_PIPELINES[family]
    parts = TINY_PARTS[family]()
    components = {n: parts[n] for n in names}
    extra = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False) if family == "sd" else {}
    getattr(diffusers, pipeline or name)(**components, **extra).save_pretrained(path)
    return components


TINY_PARTS = {"sd": tiny_latent_parts, "sdxl": tiny_sdxl_parts, "sd3": tiny_sd3_parts, "flux": tiny_flux_parts}
"""Each latent family's tiny components."""
