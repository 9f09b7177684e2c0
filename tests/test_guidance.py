"""Guidance (``guidance``): CLIP's pixel values, loss and score, the spherical distance and range loss, the guided
noise prediction and the weighed loss, the background loss (LPIPS or MSE), and guidance plugged in by the user."""

from __future__ import annotations

import math

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDPMScheduler
from helpers import fast_call, images, tiny_clip_parts, tiny_unet

from blended_pipeline import BackgroundPreservationLoss, BlendedDiffusionPipeline, CLIPGuidance
from blended_pipeline.guidance import clip_pixel_values, range_loss, spherical_distance


def test_clip_pixel_values_match_the_feature_extractor():
    parts = tiny_clip_parts()
    x = images(1, 16)
    pil = PIL.Image.fromarray(((x[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy())
    expected = parts["feature_extractor"](pil, return_tensors="pt").pixel_values
    quantised = torch.from_numpy(np.array(pil)).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert torch.allclose(clip_pixel_values(quantised, parts["feature_extractor"]), expected, atol=1e-5)
    assert clip_pixel_values(images(2, 40), parts["feature_extractor"]).shape == (2, 3, 16, 16)


def test_clip_guidance_loss_score_and_gradient():
    guidance = CLIPGuidance(**tiny_clip_parts())
    target = guidance.prepare(["a red ball"], torch.device("cpu"))
    x = images(3).requires_grad_(True)
    loss = guidance.loss(x, target)
    score = guidance.score(x, target)
    assert loss.shape == score.shape == (3,)
    assert torch.all(loss >= 0)
    # The spherical distance falls as the cosine similarity rises.
    assert torch.argsort(loss).tolist() == torch.argsort(score, descending=True).tolist()
    loss.sum().backward()
    assert x.grad.abs().sum() > 0


def test_spherical_distance_and_range_loss():
    u = torch.tensor([[1.0, 0.0]])
    assert spherical_distance(u, u).item() == 0
    assert spherical_distance(u, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(2 * (math.pi / 4) ** 2)
    assert range_loss(torch.zeros(1, 3, 2, 2)).item() == 0
    assert range_loss(torch.full((1, 3, 2, 2), 2.0)).item() == pytest.approx(1.0)


def test_guided_noise_is_the_prediction_shifted_along_the_loss_gradient():
    """An analytic stand-in: eps = a * x and loss = sum(c * x0_hat), so d loss / d x_t is known in closed form."""
    from blended_pipeline.guidance import guided_noise_prediction

    a, alpha_bar = 0.3, torch.tensor(0.64)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    c = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))

    def loss(x0_hat, x_t, abar):
        return (c * x0_hat).sum()

    sigma = (1 - alpha_bar).sqrt()
    for backprop, gradient in ((True, c * (1 - sigma * a) / alpha_bar.sqrt()), (False, c / alpha_bar.sqrt())):
        guided, x0_hat = guided_noise_prediction(lambda s: a * s, x, alpha_bar, loss, backprop)
        assert torch.allclose(guided, a * x + sigma * gradient, atol=1e-6)
        assert torch.allclose(x0_hat, (x - sigma * a * x) / alpha_bar.sqrt(), atol=1e-6)
    six = guided_noise_prediction(lambda s: torch.cat([a * s, s + 7], dim=1), x, alpha_bar, loss)[0]
    assert six.shape == (2, 6, 4, 4) and torch.equal(six[:, 3:], x + 7)  # a learned variance passes through


def test_guidance_loss_weights_views_range_and_background():
    from blended_pipeline.guidance import GuidanceLoss, mse_outside

    class Mean:
        def loss(self, views, target):
            return views.mean(dim=(1, 2, 3))

    def identity_views(images, count, generator=None):
        return images.repeat(count, 1, 1, 1)

    x0_hat = torch.full((2, 3, 4, 4), 2.0)
    source, mask = torch.zeros(2, 3, 4, 4), torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    loss = GuidanceLoss(Mean(), None, mask, identity_views, 3, clip_guidance_scale=10.0, range_loss_scale=5.0)
    assert loss(x0_hat, x0_hat, torch.tensor(0.5)).item() == pytest.approx(2 * (10 * 1.0 + 5 * 1.0))
    with_bg = GuidanceLoss(
        Mean(),
        None,
        mask,
        identity_views,
        3,
        10.0,
        5.0,
        background_loss=mse_outside,
        background_loss_scale=2.0,
        source=source,
    )
    assert with_bg(x0_hat, x0_hat, torch.tensor(0.5)).item() == pytest.approx(2 * (10 + 5 + 2 * 2.0))
    mixed = GuidanceLoss(Mean(), None, mask, identity_views, 3, 10.0, 0.0, clip_input="mixed")
    x_t = torch.zeros_like(x0_hat)  # judged = x0_hat * sqrt(1 - abar) + x_t * (1 - sqrt(1 - abar)) = 2 * 0.6
    assert mixed(x0_hat, x_t, torch.tensor(0.64)).item() == pytest.approx(2 * 10 * 1.2 * 0.5)
    masks = torch.zeros(2, 1, 4, 4)
    masks[0, :, :2, :], masks[1, :, :1, :2] = 1, 1  # half the image and an eighth
    by_area = GuidanceLoss(Mean(), None, masks, identity_views, 3, 10.0, 0.0, guidance_area_reference=0.25)
    torch.testing.assert_close(by_area.clip_weights(), torch.tensor([10 * 0.25 / 0.5, 10 * 0.25 / 0.125]))
    # each result's CLIP term (its masked mean: 2 * area) weighed by its own weight
    assert by_area(x0_hat, x0_hat, torch.tensor(0.5)).item() == pytest.approx(5 * 2 * 0.5 + 20 * 2 * 0.125)


class Brightness:
    """A guidance of the ``Guidance`` protocol with no CLIP: brighter is better."""

    def prepare(self, prompts, device):
        return None

    def loss(self, views, target):
        return -views.mean(dim=(1, 2, 3))

    def score(self, x, target):
        return x.mean(dim=(1, 2, 3))


def test_custom_guidance_plugs_in_as_a_plain_attribute(pipe, image, mask):
    pipe.guidance = Brightness()
    out = fast_call(pipe, image, mask, num_images_per_prompt=3)
    assert out.scores == sorted(out.scores, reverse=True)
    inside = np.asarray(mask) > 0
    brighter = fast_call(pipe, image, mask, num_images_per_prompt=3, clip_guidance_scale=5000.0)
    assert brighter.images[:, inside].mean() > out.images[:, inside].mean()


def test_a_pipeline_without_clip_parts_ranks_and_restarts_with_its_own_guidance(image, mask):
    scheduler = DDPMScheduler(num_train_timesteps=100)
    pipe = BlendedDiffusionPipeline(tiny_unet(3).eval(), scheduler, None, None, None, default_restart_at=0.5)
    pipe.set_progress_bar_config(disable=True)
    pipe.guidance = Brightness()
    out = fast_call(pipe, image, mask, num_images_per_prompt=3, rank_border_weight=0.2)
    assert out.settings["restart_at"] == 0.5 and out.settings["rank_border_weight"] == 0.2
    assert out.scores == sorted(out.scores, reverse=True)


def lpips_with_random_backbone() -> BackgroundPreservationLoss:
    import lpips

    torch.manual_seed(0)
    return BackgroundPreservationLoss(lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval())


def test_background_loss_looks_only_outside_the_mask():
    loss = lpips_with_random_backbone()
    x = images(1)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    changed_inside = x.clone()
    changed_inside[..., 4:12, 4:12] = 0.3
    changed_outside = x.clone()
    changed_outside[..., :4, :] = 0.3
    assert loss(x, changed_inside, mask).item() == pytest.approx(0, abs=1e-6)
    assert loss(x, changed_outside, mask).item() > 0.01


def test_algorithm_1_with_background_loss(pipe, image, mask):
    plain = fast_call(pipe, image, mask, blend=False)
    lpips_loss = fast_call(
        pipe, image, mask, blend=False, background_loss_scale=1000.0, background_loss=lpips_with_random_backbone()
    )
    mse_loss = fast_call(pipe, image, mask, blend=False, background_loss_scale=1000.0, background_loss="mse")
    for with_loss in (lpips_loss, mse_loss):
        assert np.isfinite(with_loss.images).all() and not np.array_equal(plain.images, with_loss.images)
    assert not np.array_equal(lpips_loss.images, mse_loss.images)


def test_missing_lpips_weights_say_where_to_put_them(monkeypatch, pipe, image, mask):
    import lpips

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(lpips, "LPIPS", offline)
    with pytest.raises(RuntimeError, match="alexnet-owt-7be5be79.pth"):
        fast_call(pipe, image, mask, blend=False, background_loss_scale=1.0)
    # The offline choice runs, and a loss of weight 0 is never loaded.
    assert np.isfinite(
        fast_call(pipe, image, mask, blend=False, background_loss_scale=1.0, background_loss="mse").images
    ).all()
    assert np.isfinite(fast_call(pipe, image, mask, blend=False).images).all()
