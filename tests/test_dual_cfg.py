"""DualCFGGuider, against ComfyUI's Guider_DualCFG rule (nodes_custom_sampler.py):
regular ``cfg(cond2, negative, cfg2) + cfg1 * (cond1 - cond2)``, nested
``negative + cfg2 * (cfg(cond1, cond2, cfg1) - negative)``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nodegen.diffusion.dual_cfg import DualCFG
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture
from tests.support.nodes import run
from tests.support.sampling import sample

torch.set_num_threads(1)


@pytest.mark.parametrize("nested", [False, True])
def test_the_rule(nested):
    g = torch.Generator().manual_seed(0)
    pos, mid, neg = (torch.randn(1, 4, 2, 2, generator=g) for _ in range(3))
    cfg1, cfg2 = 3.0, 5.0
    den = SimpleNamespace(last_cond=mid, predict=lambda items, x, s, active_only: pos)
    denoised = neg + cfg2 * (mid - neg)  # what the denoiser's own CFG gives (cond2 against the negative)
    got = DualCFG(["cond1"], cfg1, cfg2, nested=nested)(den, None, 1.0, denoised)
    if nested:
        want = neg + cfg2 * ((mid + cfg1 * (pos - mid)) - neg)
    else:
        want = neg + cfg2 * (mid - neg) + cfg1 * (pos - mid)
    torch.testing.assert_close(got, want)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


@pytest.mark.parametrize("style", ["regular", "nested"])
def test_with_cfg2_one_it_is_cfg_of_cond1_against_cond2(sd1, style):
    """At ``cfg_cond2_negative = 1`` both styles are ``cond2 + cfg1 * (cond1 - cond2)``: CFGGuider's
    result with cond1 as the positive and cond2 as the negative (the negative is not run)."""
    model = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    cond1, cond2, neg = te.encode("a red house"), te.encode("a house"), te.encode("blurry")
    guider = run("DualCFGGuider", model=model, cond1=cond1, cond2=cond2, negative=neg, cfg_conds=4.0,
                 cfg_cond2_negative=1.0, style=style)["guider"]
    kw = dict(seed=6, steps=3, sampler="euler", scheduler="normal", device="cpu")
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    got = sample(guider.model, guider.positive, guider.negative, latent, cfg=guider.cfg, **kw)["samples"]
    want = sample(model, cond1, cond2, latent, cfg=4.0, **kw)["samples"]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-4)  # batched apart: float rounding only
    full = run("DualCFGGuider", model=model, cond1=cond1, cond2=cond2, negative=neg, cfg_conds=4.0,
               cfg_cond2_negative=6.0, style=style)["guider"]
    other = sample(full.model, full.positive, full.negative, latent, cfg=full.cfg, **kw)["samples"]
    assert (other - got).abs().max() > 1e-3 and not model.options.get("denoise_hooks")
