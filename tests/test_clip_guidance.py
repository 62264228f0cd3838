"""CLIP-guided sampling with tiny random models: scale 0 (or a step range that excludes every
step) is bit-identical to no guidance, guidance raises the CLIP score of the result at the same
seed, and cancellation stops a run inside a guided step."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nodegen.clip.guidance import ClipGuidance, guided_model, make_cutouts, text_target, unit_rms
from nodegen.clip.load import load_clip
from nodegen.clip.score import clip_scores
from nodegen.diffusion.conditioning import CondItem
from nodegen.diffusion.sample import Steps, sample
from nodegen.kernel.context import Cancelled
from nodegen.models.objects import DiffusionModel, VAEModel
from tests.support.clip_fixtures import tiny_clip
from tests.support.fixtures import sd1_fixture

PROMPT = "a red circle"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    fx = sd1_fixture()
    root = tmp_path_factory.mktemp("clipguide")
    save_file({k: v.contiguous() for k, v in tiny_clip(seed=4).state_dict().items()}, str(root / "c.safetensors"))
    clip = load_clip(root / "c.safetensors")
    model = DiffusionModel.from_unet(fx.unet, "sd1")
    vae = VAEModel(fx.vae)
    g = torch.Generator().manual_seed(5)
    pos = [CondItem(torch.randn(1, 77, 64, generator=g))]
    neg = [CondItem(torch.randn(1, 77, 64, generator=g))]
    return clip, model, vae, pos, neg


def _run(model, pos, neg, seed=7, sampler="euler", steps=4, **kw):
    lat = {"samples": torch.zeros(2, 4, 8, 8)}
    return sample(model, pos, neg, lat, seed, Steps(steps, "karras"), 3.0, sampler, **kw).latent["samples"]


def _guidance(clip, vae, scale, **kw):
    return ClipGuidance(clip, vae, text_target(clip, PROMPT), scale, **kw)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m"])
def test_scale_zero_and_empty_range_are_bit_identical(parts, sampler):
    clip, model, vae, pos, neg = parts
    plain = _run(model, pos, neg, sampler=sampler)
    off = _run(guided_model(model, _guidance(clip, vae, 0.0)), pos, neg, sampler=sampler)
    g = _guidance(clip, vae, 500.0, start=0.3, end=0.31)  # no step of a 4-step schedule falls in it
    outside = _run(guided_model(model, g), pos, neg, sampler=sampler)
    assert not g.last_loss
    assert torch.equal(plain, off) and torch.equal(plain, outside)
    assert "denoise_hooks" not in model.options  # the wrapper left the original model alone


@pytest.mark.parametrize(("through_model", "scale", "normalise"), [(True, 500.0, False), (False, 500.0, False),
                                                                 (True, 0.3, True)],
                         ids=["through_model", "x0", "normalised"])
def test_guidance_raises_the_clip_score_at_the_same_seed(parts, through_model, scale, normalise):
    clip, model, vae, pos, neg = parts
    plain = vae.decode(_run(model, pos, neg))
    g = _guidance(clip, vae, scale, cutouts=2, through_model=through_model, normalise=normalise)
    guided = vae.decode(_run(guided_model(model, g), pos, neg))
    before, after = clip_scores(clip, plain, [PROMPT])[:, 0], clip_scores(clip, guided, [PROMPT])[:, 0]
    assert g.last_loss, "the hook ran"
    assert (after > before).all(), (before, after)


def test_an_assumed_vae_scale_gives_way_to_the_model_family_scale(parts):
    clip, model, vae, pos, neg = parts
    # a VAE whose (wrong) scale was only assumed decodes the sampler's latents at the SD1 scale
    assumed = VAEModel(vae.vae, scaling_factor=0.13025, scale_assumed=True)
    explicit = VAEModel(vae.vae, scaling_factor=0.13025)
    runs = [_run(guided_model(model, _guidance(clip, v, 500.0, cutouts=1)), pos, neg, steps=2)
            for v in (vae, assumed, explicit)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])  # an explicit scale is kept


def test_unit_rms_rescales_each_item():
    g = torch.tensor([[[3.0, 4.0]], [[0.0, 0.0]]])
    out = unit_rms(g)
    torch.testing.assert_close(out[0].pow(2).mean().sqrt(), torch.tensor(1.0))
    assert torch.equal(out[1], g[1])  # a zero gradient stays zero


def test_decode_at_reduced_size_and_cutouts_shapes(parts):
    clip, _, vae, _, _ = parts
    g = _guidance(clip, vae, 1.0, decode_size=32)
    img = g.decode(torch.zeros(1, 4, 8, 8))
    assert img.shape == (1, 3, 32, 32)  # 64 px picture decoded from a latent resized to 4x4
    cuts = make_cutouts(torch.rand(3, 3, 64, 48), 5, 32, torch.Generator().manual_seed(0))
    assert cuts.shape == (15, 3, 32, 32)


class _CancelAfter:
    def __init__(self, n: int) -> None:
        self.n = n

    def check_cancelled(self) -> None:
        self.n -= 1
        if self.n < 0:
            raise Cancelled("run cancelled")

    def progress(self, step, total, preview=None) -> None:
        self.check_cancelled()


def test_cancel_stops_inside_a_guided_step(parts):
    clip, model, vae, pos, neg = parts
    g = _guidance(clip, vae, 100.0)
    ctx = _CancelAfter(2)  # before sampling, then the first guidance check; the second raises
    with pytest.raises(Cancelled):
        _run(guided_model(model, g), pos, neg, ctx=ctx, preview=False)
    assert not g.last_loss, "cancelled before the first guided step finished"
