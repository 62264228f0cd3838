"""ConditioningSetTimestepRange, ConditioningSetMask and ConditioningAverage, against predictions
computed here from ComfyUI's rules (the denoiser on the tiny SD1 UNet, one item at a time)."""

from __future__ import annotations

import pytest
import torch

from nodegen.diffusion.conditioning import CondItem
from nodegen.diffusion.denoiser import Denoiser
from nodegen.models.objects import DiffusionModel
from tests.support.fixtures import fixture
from tests.support.nodes import run

torch.set_num_threads(1)



@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


def _item(seed: int, tokens: int = 77, pooled: bool = False) -> CondItem:
    g = torch.Generator().manual_seed(seed)
    return CondItem(torch.randn(1, tokens, 64, generator=g), torch.randn(1, 32, generator=g) if pooled else None)


def _denoise(sd1, positive, x, sigma, cfg=1.0, negative=None):
    model = DiffusionModel.from_unet(sd1.unet, "sd1")
    den = Denoiser(model, sd1.unet, positive, negative, cfg, latent_image=torch.zeros_like(x))
    return den(x, torch.tensor([sigma]))


def test_timestep_range_switches_prompts(sd1):
    from nodegen.diffusion.model_sampling import ModelSampling
    from nodegen.models.schedule import scaled_linear_alphas_cumprod

    ms = ModelSampling(scaled_linear_alphas_cumprod())
    a, b = _item(1), _item(2)
    first = run("ConditioningSetTimestepRange", conditioning=[a], start=0.0, end=0.5)["conditioning"]
    second = run("ConditioningSetTimestepRange", conditioning=[b], start=0.5, end=1.0)["conditioning"]
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    for t, alone in ((999, a), (600, a), (400, b), (20, b)):  # progress 0, 0.4, 0.6, 0.98
        sigma = float(ms.t_to_sigma(t))
        got = _denoise(sd1, first + second, x * sigma, sigma)
        assert torch.equal(got, _denoise(sd1, [alone], x * sigma, sigma)), t
    assert a.extras == {} and first[0].extras == {"timestep_start": 0.0, "timestep_end": 0.5}


def test_mask_weights_the_prediction(sd1):
    import torch.nn.functional as F

    a, b = _item(3), _item(4)
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :28] = 1.0
    masked = run("ConditioningSetMask", conditioning=[a], mask=mask, strength=0.6, set_cond_area="default")
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * 3
    got = _denoise(sd1, masked["conditioning"] + [b], x, 3.0)
    pa, pb = _denoise(sd1, [a], x, 3.0), _denoise(sd1, [b], x, 3.0)
    w = F.interpolate(mask[:, None], size=(8, 8), mode="bilinear", align_corners=False) * 0.6
    assert torch.allclose(got, (pa * w + pb) / (w + 1), atol=1e-5)


def test_mask_bounds_limits_the_area(sd1):
    from nodegen.diffusion import cfg

    a, b = _item(5), _item(6)
    mask = torch.zeros(1, 16, 16)
    mask[0, 2:12, 4:14] = 1.0  # given at latent size here: no resize
    bounded = run("ConditioningSetMask", conditioning=[a], mask=mask, strength=1.0, set_cond_area="mask bounds")
    item = bounded["conditioning"][0]
    assert cfg.area_of(item, 16, 16) == (10, 10, 2, 4)
    small = torch.zeros(1, 16, 16)
    small[0, 15, 15] = 1.0
    assert cfg.mask_bounds(small, 16, 16) == (1, 1, 15, 15)  # 8 wanted, cut at the latent's edge
    assert cfg.mask_bounds(torch.zeros(1, 16, 16), 16, 16) == (8, 8, 0, 0)
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2)) * 2
    got = _denoise(sd1, [item, b], x, 2.0)
    pb = _denoise(sd1, [b], x, 2.0)
    outside = torch.ones(16, 16, dtype=torch.bool)
    outside[2:12, 4:14] = False
    assert torch.allclose(got[..., outside], pb[..., outside], atol=1e-6)
    assert not torch.allclose(got[..., ~outside], pb[..., ~outside], atol=1e-3)


def test_average_blends_embeddings_and_pooled():
    to, frm = _item(7, 77, pooled=True), _item(8, 154, pooled=True)
    out = run("ConditioningAverage", conditioning_to=[to], conditioning_from=[frm],
              conditioning_to_strength=0.25)["conditioning"][0]
    assert torch.allclose(out.embeds, to.embeds * 0.25 + frm.embeds[:, :77] * 0.75)
    assert torch.allclose(out.pooled, to.pooled * 0.25 + frm.pooled * 0.75)
    long_to, short_from = _item(9, 154), _item(10, 77, pooled=True)
    out = run("ConditioningAverage", conditioning_to=[long_to], conditioning_from=[short_from],
              conditioning_to_strength=0.5)["conditioning"][0]
    padded = torch.cat([short_from.embeds, torch.zeros(1, 77, 64)], dim=1)
    assert torch.allclose(out.embeds, long_to.embeds * 0.5 + padded * 0.5)
    assert out.pooled is short_from.pooled  # 'to' had none: ComfyUI takes 'from''s
    with pytest.raises(ValueError, match="ConditioningAverage: input 'conditioning_from' is empty"):
        run("ConditioningAverage", conditioning_to=[to], conditioning_from=[], conditioning_to_strength=0.5)


def test_range_percent_to_sigma_like_comfyui():
    """ComfyUI's percent_to_sigma: discrete models ``sigma((1 - p) * 999)``; flow models the shifted
    time ``1 - p``; 0 and 1 never cut."""
    from nodegen.diffusion.flow_sampling import FlowModelSampling
    from nodegen.diffusion.model_sampling import ModelSampling
    from nodegen.models.schedule import scaled_linear_alphas_cumprod

    den = Denoiser.__new__(Denoiser)
    den.ms = ModelSampling(scaled_linear_alphas_cumprod())
    assert den._percent_sigma(0.25) == pytest.approx(float(den.ms.t_to_sigma(749.25)))
    assert den._percent_sigma(0.0) == float("inf") and den._percent_sigma(1.0) == 0.0
    den.ms = FlowModelSampling("flow", shift=3.0)
    assert den._percent_sigma(0.25) == pytest.approx(3.0 * 0.75 / (1 + 2.0 * 0.75))
