"""APG, CFGZeroStar and CFGNorm (nodes/guidance_patches.py), the ComfyUI guidance patches.

Oracles:

* APG: diffusers' ``normalized_guidance`` (diffusers.guiders.adaptive_projected_guidance) with its
  ``MomentumBuffer`` and ``use_original_formulation=True``: ComfyUI's pre-CFG rule ends in
  ``cond + cfg * g'``, which is that formulation (diffusers' default is ``uncond + cfg * g'``);
  step by step on tensors and over a whole sampling run on the SD1 fixture.
* Where ComfyUI and diffusers part (cfg 1, where ComfyUI's batch gives zeros for the skipped
  negative and diffusers turns APG off; the reset when sigma goes up), ComfyUI's rules are
  written out below (:func:`comfy_step`, :func:`comfy_apg`, ...) from comfy/samplers.py's
  sampling_function / cfg_function and comfy_extras/nodes_apg.py, nodes_cfg.py, and a run with
  them put in as a hook on the plain model is the reference.
* CFGZeroStar: its ``alpha`` == diffusers' ``cfg_zero_star_scale`` on ``x - denoised``; the
  combination == ``ClassifierFreeZeroStarGuidance`` (no zero-init steps) on the denoised
  predictions where ``x = 0``; otherwise ComfyUI's rule (it scales denoised, not the model output).
* CFGNorm: ComfyUI's rule.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from nodegen.diffusion.adaptive_projected_guidance import AdaptiveProjectedGuidance
from nodegen.diffusion.cfg import guidance
from nodegen.diffusion.cfg_zero_star import CFGZeroStar, optimized_scale
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture
from tests.support.nodes import run
from tests.support.sampling import sample

torch.set_num_threads(1)
DIMS = [-1, -2, -3]


# -- ComfyUI's rules, written out --------------------------------------------------------------
def comfy_apg(eta: float, norm_threshold: float, momentum: float):
    """nodes_apg.py's pre-CFG function: its running sum lives in the closure (across runs)."""
    state = {"avg": None, "sigma": None}

    def pre(cond, uncond, x, sigma, cfg):
        if state["sigma"] is not None and sigma > state["sigma"]:
            state["avg"] = None
        state["sigma"] = sigma
        g = cond - uncond
        if momentum != 0:
            state["avg"] = g if state["avg"] is None else momentum * state["avg"] + g
            g = state["avg"]
        if norm_threshold > 0:
            n = g.norm(p=2, dim=DIMS, keepdim=True)
            g = g * torch.minimum(torch.ones_like(n), norm_threshold / n)
        unit = F.normalize(cond, dim=DIMS)
        along = (g * unit).sum(dim=DIMS, keepdim=True) * unit
        return uncond + (g - along + eta * along) + (cond - uncond) / cfg, uncond
    return pre


def comfy_zero_star(out, cond, uncond, x, cfg):
    flat = lambda t: t.reshape(t.shape[0], -1)  # noqa: E731
    p, n = flat(x - cond), flat(x - uncond)
    alpha = ((p * n).sum(1, keepdim=True) / ((n**2).sum(1, keepdim=True) + 1e-8)).reshape(-1, 1, 1, 1)
    return out + uncond * (alpha - 1.0) + cfg * uncond * (1.0 - alpha)


def comfy_cfg_norm(strength: float):
    def post(out, cond, uncond, x, cfg):
        scale = (cond.norm(dim=1, keepdim=True) / (out.norm(dim=1, keepdim=True) + 1e-8)).clamp(0.0, 1.0)
        return out * scale * strength
    return post


def comfy_step(cond, uncond, x, sigma, cfg, pre=(), post=()):
    """sampling_function after the model calls: a skipped negative (cfg 1) is zeros, then the
    pre-CFG functions, CFG, the post-CFG functions (which see the pre-CFG functions' predictions)."""
    uncond = torch.zeros_like(cond) if uncond is None else uncond
    for fn in pre:
        cond, uncond = fn(cond, uncond, x, sigma, cfg)
    out = uncond + (cond - uncond) * cfg
    for fn in post:
        out = fn(out, cond, uncond, x, cfg)
    return out


def as_comfy(model: DiffusionModel, pre=(), post=()) -> DiffusionModel:
    """The plain model with ComfyUI's rules put in as a hook (replacing nodegen's CFG result)."""
    def hook(den, x, sigma, denoised):
        uncond = den.last_uncond if den.ran_uncond else None
        return comfy_step(den.last_cond, uncond, x, sigma, den.cfg, pre, post)
    return model.with_denoise_hook(hook)


def den_for(cfg: float) -> SimpleNamespace:
    return SimpleNamespace(cfg=cfg, run_state={})


def randn(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- APG on tensors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("eta", "norm_threshold", "momentum"), [(1.0, 5.0, 0.0), (0.0, 5.0, -0.5), (0.4, 0.0, 0.75)])
def test_apg_equals_diffusers_step_by_step(eta, norm_threshold, momentum):
    from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance

    cfg, den = 6.0, den_for(6.0)
    hook = AdaptiveProjectedGuidance(eta, norm_threshold, momentum)
    buffer = MomentumBuffer(momentum) if momentum else None
    for step, sigma in enumerate([9.0, 4.0, 1.5, 0.4]):
        cond, uncond = randn(2, 4, 8, 8, seed=step), randn(2, 4, 8, 8, seed=10 + step) * 0.7
        assert float((cond - uncond).norm(p=2, dim=DIMS).min()) > norm_threshold  # the limit acts
        got = guidance(*hook(den, None, sigma, cond, uncond), cfg)
        want = normalized_guidance(cond, uncond, cfg, buffer, eta, norm_threshold, use_original_formulation=True)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        default = normalized_guidance(cond, uncond, cfg, None, eta, norm_threshold)  # uncond + cfg * g'
        assert (got - default).abs().max() > 0.1


def test_apg_follows_comfyui_at_cfg_one_and_when_sigma_goes_up():
    """At cfg 1 ComfyUI's skipped negative is zeros (so ``g = cond``); diffusers turns APG off there.
    Within a run the running sum starts again when sigma goes up."""
    for cfg, sigmas, skipped in [(1.0, [5.0, 3.0, 1.0], True), (4.0, [5.0, 3.0, 6.0, 2.0, 1.0], False)]:
        hook, den, comfy = AdaptiveProjectedGuidance(0.5, 5.0, -0.75), den_for(cfg), comfy_apg(0.5, 5.0, -0.75)
        for step, sigma in enumerate(sigmas):
            cond = randn(1, 4, 8, 8, seed=step)
            uncond = None if skipped else randn(1, 4, 8, 8, seed=20 + step)
            got = guidance(*hook(den, None, sigma, cond, uncond), cfg)
            torch.testing.assert_close(got, comfy_step(cond, uncond, None, sigma, cfg, [comfy]))
    cond = randn(1, 4, 8, 8, seed=0)
    lengthened = guidance(*AdaptiveProjectedGuidance()(den_for(1.0), None, 1.0, cond, None), 1.0)
    torch.testing.assert_close(lengthened, cond * (1 + 5.0 / cond.norm()))  # defaults at cfg 1
    uncond = randn(1, 4, 8, 8, seed=1)
    assert torch.equal(guidance(*AdaptiveProjectedGuidance()(den_for(0.0), None, 1.0, cond, uncond), 0.0), uncond)


# -- sampling runs on the SD1 fixture ---------------------------------------------------------------
@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    fx = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], "sd1")
    return SimpleNamespace(fx=fx, model=DiffusionModel.from_unet(fx.unet, "sd1", "epsilon"),
                           pos=te.encode("a red house"), neg=te.encode("blurry"))


def _sample(sd1, model, cfg=6.0, sigmas=None, steps=4, seed=3, sampler="euler"):
    kw = dict(sigmas=sigmas) if sigmas is not None else dict(steps=steps, scheduler="normal")
    return sample(model, sd1.pos, sd1.neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=seed, cfg=cfg,
                  sampler=sampler, device="cpu", **kw)["samples"]


def test_apg_sampling_run_equals_diffusers(sd1):
    from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance

    buffer = MomentumBuffer(-0.5)

    def diffusers_apg(den, x, sigma, denoised):
        return normalized_guidance(den.last_cond, den.last_uncond, den.cfg, buffer, 0.0, 2.0,
                                   use_original_formulation=True)

    apg = run("APG", model=sd1.model, eta=0.0, norm_threshold=2.0, momentum=-0.5)["model"]
    got = _sample(sd1, apg)
    torch.testing.assert_close(got, _sample(sd1, sd1.model.with_denoise_hook(diffusers_apg)), rtol=1e-4, atol=1e-4)
    assert (got - _sample(sd1, sd1.model)).abs().max() > 1e-2 and not sd1.model.options.get("pre_cfg_hooks")


def test_apg_momentum_starts_afresh_each_run(sd1):
    """The same patched MODEL (as the cache and the server reuse it) runs a second schedule that starts
    below where the first ended: it equals a run of a fresh patch. ComfyUI's closure, which resets
    only when sigma goes up, would carry the first run's sum in (shown with its rule)."""
    first, second = torch.tensor([14.6, 6.0, 3.0]), torch.tensor([2.5, 1.0, 0.3, 0.0])
    settings = dict(eta=0.0, norm_threshold=3.0, momentum=-0.75)
    apg = run("APG", model=sd1.model, **settings)["model"]
    _sample(sd1, apg, sigmas=first)
    after = _sample(sd1, apg, sigmas=second)
    fresh = _sample(sd1, run("APG", model=sd1.model, **settings)["model"], sigmas=second)
    assert torch.equal(after, fresh)
    comfy = as_comfy(sd1.model, [comfy_apg(0.0, 3.0, -0.75)])
    torch.testing.assert_close(_sample(sd1, comfy, sigmas=first), _sample(sd1, apg, sigmas=first), rtol=1e-4, atol=1e-4)
    assert (_sample(sd1, comfy, sigmas=second) - fresh).abs().max() > 1e-3  # ComfyUI's closure carried it


def test_the_three_chained_follow_comfyui(sd1):
    """APG then CFGZeroStar then CFGNorm: the post-CFG patches see APG's positive prediction, as in
    ComfyUI; at cfg 1 CFGZeroStar changes nothing and APG / CFGNorm still act; a CFG++ sampler at
    cfg 1 runs the negative (ComfyUI's disable_cfg1_optimization), and APG uses it."""
    model = run("APG", model=sd1.model, eta=0.5, norm_threshold=4.0, momentum=-0.5)["model"]
    model = run("CFGZeroStar", model=model)["model"]
    model = run("CFGNorm", model=model, strength=0.95)["model"]
    for cfg, sampler in ((5.0, "euler"), (1.0, "euler"), (1.0, "euler_cfg_pp")):
        comfy = as_comfy(sd1.model, [comfy_apg(0.5, 4.0, -0.5)], [comfy_zero_star, comfy_cfg_norm(0.95)])
        torch.testing.assert_close(_sample(sd1, model, cfg=cfg, sampler=sampler),
                                   _sample(sd1, comfy, cfg=cfg, sampler=sampler), rtol=1e-4, atol=1e-4)
    zero_star = run("CFGZeroStar", model=sd1.model)["model"]
    assert torch.equal(_sample(sd1, zero_star, cfg=1.0), _sample(sd1, sd1.model, cfg=1.0))
    assert (_sample(sd1, zero_star) - _sample(sd1, sd1.model)).abs().max() > 1e-3


# -- CFGZeroStar and CFGNorm on tensors ---------------------------------------------------------------
def test_cfg_zero_star_matches_diffusers():
    from diffusers.guiders import ClassifierFreeZeroStarGuidance
    from diffusers.guiders.classifier_free_zero_star_guidance import cfg_zero_star_scale

    x, cond, uncond = randn(2, 4, 8, 8, seed=1), randn(2, 4, 8, 8, seed=2), randn(2, 4, 8, 8, seed=3)
    want = cfg_zero_star_scale((x - cond).flatten(1), (x - uncond).flatten(1)).reshape(2, 1, 1, 1)
    torch.testing.assert_close(optimized_scale(x - cond, x - uncond), want)
    guider = ClassifierFreeZeroStarGuidance(guidance_scale=5.0, zero_init_steps=0)
    guider.set_state(step=0, num_inference_steps=1, timestep=torch.tensor(999))
    den = SimpleNamespace(cfg=5.0, ran_uncond=True, last_cond=cond, last_uncond=uncond)
    zero = torch.zeros_like(x)
    got = CFGZeroStar()(den, zero, 1.0, guidance(cond, uncond, 5.0))
    torch.testing.assert_close(got, guider.forward(cond, uncond).pred)  # x = 0: the same rule
    got = CFGZeroStar()(den, x, 1.0, guidance(cond, uncond, 5.0))
    torch.testing.assert_close(got, comfy_step(cond, uncond, x, 1.0, 5.0, post=[comfy_zero_star]))
    # diffusers scales the model output (here x - denoised), ComfyUI the denoised prediction
    theirs = x - guider.forward(x - cond, x - uncond).pred
    alpha = optimized_scale(x - cond, x - uncond)
    torch.testing.assert_close(theirs - got, (1 - alpha) * (1 - 5.0) * x, rtol=1e-4, atol=1e-4)


def test_cfg_norm_rule():
    from nodegen.diffusion.cfg_norm import CFGNorm

    cond, uncond = randn(2, 4, 8, 8, seed=4), randn(2, 4, 8, 8, seed=5)
    for strength in (1.0, 0.5):
        den = SimpleNamespace(last_cond=cond)
        out = guidance(cond, uncond, 7.0)
        got = CFGNorm(strength)(den, None, 1.0, out)
        torch.testing.assert_close(got, comfy_cfg_norm(strength)(out, cond, uncond, None, 7.0))
        assert float(got.norm(dim=1).div(cond.norm(dim=1)).max()) <= strength + 1e-5
    torch.testing.assert_close(CFGNorm(0.5)(den, None, 1.0, cond), cond * 0.5)  # cfg 1: strength scales


# -- flow models ----------------------------------------------------------------------------------------
def test_flow_models_get_comfyuis_rules(tmp_path_factory):
    """ComfyUI applies all three to SD3 / Flux as to any model (on the denoised predictions): so does
    nodegen, at Flux's usual cfg 1 (no negative) and with a negative at cfg 3."""
    from tests.support.flow_fixtures import fixture as flow_fixture
    from tests.test_oracle_flow import flux_components

    model, te, _ = flux_components(flow_fixture("flux", tmp_path_factory.mktemp("flux")))
    pos, neg = te.encode("a"), te.encode("b")
    patched = run("CFGNorm", model=run("CFGZeroStar", model=run("APG", model=model, eta=0.0, momentum=-0.5)["model"])
                  ["model"], strength=0.9)["model"]
    for cfg, negative in ((1.0, None), (3.0, neg)):
        comfy = as_comfy(model, [comfy_apg(0.0, 5.0, -0.5)], [comfy_zero_star, comfy_cfg_norm(0.9)])
        got, want, plain = (sample(m, pos, negative, {"samples": torch.zeros(1, 16, 8, 8)}, seed=1, steps=3,
                                   cfg=cfg, scheduler="simple", device="cpu")["samples"] for m in (patched, comfy, model))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        assert (got - plain).abs().max() > 1e-3


# -- nodes and ComfyUI import ---------------------------------------------------------------------------
def test_nodes_match_comfyuis_inputs():
    from nodegen.kernel.registry import default_registry

    reg = default_registry()
    apg = {i.name: (i.default, i.min, i.max) for i in reg.get("APG").inputs if i.name != "model"}
    assert apg == {"eta": (1.0, -10.0, 10.0), "norm_threshold": (5.0, 0.0, 50.0), "momentum": (0.0, -5.0, 1.0)}
    assert [i.name for i in reg.get("CFGZeroStar").inputs] == ["model"]
    assert {i.name: (i.default, i.min, i.max) for i in reg.get("CFGNorm").inputs if i.name != "model"} == {
        "strength": (1.0, 0.0, 100.0)}


def test_comfyui_api_workflow_with_apg_runs(sd1, tmp_path):
    from nodegen.formats import open_any
    from nodegen.runtime.engine import Engine

    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    shutil.copy(sd1.fx.single_file, models / "checkpoints" / "tiny-sd1.safetensors")
    plain = json.loads((Path(__file__).parent / "data" / "comfy" / "txt2img.api.json").read_text())
    data = copy.deepcopy(plain)
    data["20"] = {"class_type": "APG", "inputs": {"model": ["4", 0], "eta": 0.0, "norm_threshold": 3.0, "momentum": -0.5}}
    data["3"]["inputs"]["model"] = ["20", 0]
    wf = open_any(data)
    assert wf.data["nodes"]["20"]["type"] == "APG" and wf.data["nodes"]["20"]["inputs"]["momentum"] == -0.5

    def engine():
        return Engine(models=models, input_dir=tmp_path, output_dir=tmp_path / "out", device="cpu")

    first = engine()
    runs = [first.run(wf), first.run(wf, set={"3.seed": 7}), engine().run(wf, set={"3.seed": 7}),
            first.run(open_any(plain))]
    assert all(r.ok for r in runs), [r.problems for r in runs]
    apg, reused, fresh, no_apg = ([list(im.getdata()) for im in r.images] for r in runs)
    assert reused == fresh  # the cached APG MODEL carries nothing from the first run
    assert apg != no_apg and reused != apg
