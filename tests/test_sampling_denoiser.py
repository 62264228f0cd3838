"""Denoiser details: the ControlNet hook, noise-mask blending, SDXL time ids, progress fraction."""

from __future__ import annotations

import types

import pytest
import torch

from nodegen.diffusion.conditioning import CondItem
from nodegen.diffusion.denoiser import Denoiser, resize_mask
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


@pytest.fixture(scope="module")
def parts(sd1):
    model = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    return model, te.encode("a cat"), te.encode("")


class FakeControl:
    """Adds a constant to the mid-block residual between two progress fractions."""

    def __init__(self, value, start=0.0, end=1.0):
        self.value, self.start, self.end, self.calls = value, start, end, []

    def residuals(self, x, timestep, embeds, pooled_extras, progress):
        self.calls.append((x.shape[0], float(timestep), progress))
        if not self.start <= progress <= self.end:
            return None
        b = x.shape[0]
        # the fixture UNet's down-block outputs: conv_in, block 0 (resnet, downsample), block 1
        downs = [torch.zeros(b, 32, 8, 8), torch.zeros(b, 32, 8, 8), torch.zeros(b, 32, 4, 4), torch.zeros(b, 64, 4, 4)]
        return downs, torch.full((b, 64, 4, 4), float(self.value))


def _call(model, pos, neg, cfg, sigma, **kw):
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sigma
    with model.use("cpu", torch.float32) as unet:
        den = Denoiser(model, unet, pos, neg, cfg, latent_image=kw.pop("latent", torch.zeros(1, 4, 8, 8)), **kw)
        return den(x, torch.tensor([sigma])), den


def test_control_hook(parts):
    model, pos, neg = parts
    base, den = _call(model, pos, neg, 5.0, 2.0)
    ctl = FakeControl(0.5)
    pos_c = [c.copy(extras=dict(c.extras, controls=[ctl])) for c in pos]
    with_ctl, _ = _call(model, pos_c, neg, 5.0, 2.0)
    assert not torch.allclose(base, with_ctl, atol=1e-4)
    # called once per step for the one positive item, with its own batch slice, the UNet timestep
    # and the fraction of the schedule done (1 - t / 999)
    (b, t, prog), = ctl.calls
    assert b == 1 and t == float(den.ms.timestep(2.0))
    assert prog == pytest.approx(1 - float(den.ms.sigma_to_t(2.0)) / 999)
    # a zero residual is the same as no control; outside its range a control does nothing
    zero = [c.copy(extras=dict(c.extras, controls=[FakeControl(0.0)])) for c in pos]
    assert torch.allclose(_call(model, zero, neg, 5.0, 2.0)[0], base, atol=1e-5)
    late = [c.copy(extras=dict(c.extras, controls=[FakeControl(0.5, start=0.99)])) for c in pos]
    assert torch.equal(_call(model, late, neg, 5.0, 2.0)[0], base)
    # two controls add up: 0.25 + 0.25 == 0.5
    two = [c.copy(extras=dict(c.extras, controls=[FakeControl(0.25), FakeControl(0.25)])) for c in pos]
    assert torch.allclose(_call(model, two, neg, 5.0, 2.0)[0], with_ctl, atol=1e-5)


def test_noise_mask_blending(parts):
    model, pos, neg = parts
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(1, 64, 64)
    mask[:, :, 32:] = 1  # repaint the right half (pixel-size mask, resized to the latent)
    out, den = _call(model, pos, neg, 4.0, 1.5, latent=latent, noise_mask=mask, noise=torch.zeros(1, 4, 8, 8))
    assert den.noise_mask.shape == (1, 1, 8, 8)
    assert torch.equal(out[..., :4], latent[..., :4])  # kept area: the latent itself
    assert not torch.allclose(out[..., 4:], latent[..., 4:], atol=1e-2)
    assert resize_mask(torch.ones(2, 16, 16), 4, 4, 3).shape == (3, 1, 4, 4)


def test_sdxl_time_ids_rules():
    fake = types.SimpleNamespace(family="sdxl", prediction_type="epsilon", alphas_cumprod=torch.linspace(0.99, 0.01, 1000))
    unet = types.SimpleNamespace(config=types.SimpleNamespace(in_channels=4))
    item = CondItem(torch.zeros(1, 77, 8))
    den = Denoiser(fake, unet, [item], None, 1.0, latent_image=torch.zeros(1, 4, 16, 12))
    assert den._time_ids(item, False, 16, 12).tolist() == [[128, 96, 0, 0, 128, 96]]
    item2 = CondItem(torch.zeros(1, 77, 8), extras=dict(width=1024, height=768, crop_w=4, crop_h=8,
                                                         target_width=512, target_height=256))
    assert den._time_ids(item2, False, 16, 12).tolist() == [[768, 1024, 8, 4, 256, 512]]
    fake.family = "sdxl_refiner"
    den = Denoiser(fake, unet, [item], None, 1.0, latent_image=torch.zeros(1, 4, 16, 12))
    assert den._time_ids(item, False, 16, 12).tolist() == [[128, 96, 0, 0, 6.0]]
    assert den._time_ids(item, True, 16, 12).tolist() == [[128, 96, 0, 0, 2.5]]
    item3 = CondItem(torch.zeros(1, 77, 8), extras=dict(aesthetic_score=7.5, width=64, height=32))
    assert den._time_ids(item3, True, 16, 12).tolist() == [[32, 64, 0, 0, 7.5]]
