"""Oracle: our sampling == diffusers' StableDiffusionPipeline on the same fixture components
(max abs pixel difference <= 1e-3, fp32 CPU).

Mapping (documented in nodegen/diffusion/schedules.py): diffusers' Euler/Heun/LMS with
``timestep_spacing="linspace"`` == our ``normal`` (step counts where 999/(steps-1) is an integer);
DPM-Solver / UniPC with ``linspace`` == our ``sgm_uniform``; ``use_karras_sigmas`` == ``karras``;
DDIM ``leading`` + ``steps_offset=1`` + ``set_alpha_to_one`` == ``ddim_uniform``.

Starting noise: we (like ComfyUI) start from ``noise * sqrt(1 + sigma^2)`` when the schedule
starts at the model's top sigma, else ``noise * sigma``. diffusers' DPM-Solver/UniPC/DDIM agree at
the top sigma; its Euler/Heun/LMS (linspace) start from ``noise * sigma_max`` and its DDIM
(leading) from ``noise * sqrt(1 + sigma^2)`` at a lower sigma, so for those the test hands diffusers
the same seeded noise rescaled by the ratio (``latents=``), which it multiplies by its
``init_noise_sigma``.
"""

from __future__ import annotations

import types

import pytest
import torch

from nodegen.models.objects import DiffusionModel, TextEncoder, VAEModel
from tests.support.fixtures import fixture
from tests.support.sampling import sample

torch.set_num_threads(1)
TOL = 1e-3


@pytest.fixture(scope="session")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


@pytest.fixture(scope="session")
def sd2(tmp_path_factory):
    return fixture("sd2", tmp_path_factory.mktemp("sd2"))


def components(fx):
    model = DiffusionModel.from_unet(fx.unet, fx.family, fx.prediction)
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], fx.family)
    return model, te, VAEModel.from_vae(fx.vae)


def scheduler_for(kind, config, **kw):
    import diffusers

    cls = getattr(diffusers, kind) if isinstance(kind, str) else kind
    return cls.from_config(config, **kw)


def run_pair(fx, sampler, scheduler, steps, sched_cls, sched_kw, *, noise_ratio=None, batch=1,
             cfg=7.5, seed=1234, model_options=None, sigmas_from_diffusers=False,
             vp_output=False):
    model, te, vae = components(fx)
    model.options.update(model_options or {})
    pos, neg = te.encode("a photo of a cat"), te.encode("blurry, ugly")
    lat = {"samples": torch.zeros(batch, 4, 8, 8)}
    pipe = fx.pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = scheduler_for(sched_cls, fx.scheduler.config, **sched_kw)
    sigmas = None
    if sigmas_from_diffusers:
        pipe.scheduler.set_timesteps(steps)
        sigmas = pipe.scheduler.sigmas.clone()
    out = sample(model, pos, neg, lat, seed=seed, steps=steps, cfg=cfg, sampler=sampler,
                 scheduler=scheduler, sigmas=sigmas, device="cpu")
    if vp_output:  # diffusers' VP-space sample at a final sigma > 0 is ours times c_in(sigma)
        out["samples"] = out["samples"] / (1 + float(sigmas[-1]) ** 2) ** 0.5
    ours = vae.decode(out["samples"], device="cpu").permute(0, 3, 1, 2)
    args = dict(prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds, num_inference_steps=steps,
                guidance_scale=cfg, height=64, width=64, num_images_per_prompt=batch)

    def run(output_type):
        gen = torch.Generator().manual_seed(seed)
        kw = {}
        if noise_ratio is not None:
            # the same seeded noise, rescaled; the generator continues after it (step noise)
            pipe.scheduler.set_timesteps(steps)
            kw["latents"] = torch.randn((batch, 4, 8, 8), generator=gen) * noise_ratio(pipe.scheduler)
        return pipe(**args, **kw, generator=gen, output_type=output_type).images

    ref, ref_latent = run("pt"), run("latent")
    # the latents are compared too: more sensitive than the pixels of a random tiny VAE
    scale = ref_latent.abs().max()
    assert (out["samples"] - ref_latent).abs().max() <= 1e-4 * scale, "latents differ"
    return ours, ref


def _top_ratio(s):
    """diffusers starts at noise*sigma_max; we at noise*sqrt(1+sigma_max^2)."""
    smax = float(s.sigmas[0])
    return (smax**2 + 1) ** 0.5 / float(s.init_noise_sigma)


def _ddim_ratio(s):
    """diffusers (VP) starts at noise*sqrt(1+sigma^2) in our units; we at noise*sigma (not the top)."""
    a = float(s.alphas_cumprod[int(s.timesteps[0])])
    sigma = ((1 - a) / a) ** 0.5
    return sigma / (sigma**2 + 1) ** 0.5


CASES = {
    "euler-normal": ("euler", "normal", 4, "EulerDiscreteScheduler", dict(timestep_spacing="linspace"), _top_ratio),
    "heun-normal": ("heun", "normal", 4, "HeunDiscreteScheduler", dict(timestep_spacing="linspace"), _top_ratio),
    "dpmpp_2m-karras": ("dpmpp_2m", "karras", 7, "DPMSolverMultistepScheduler", dict(use_karras_sigmas=True), None),
    "dpmpp_2m-sgm_uniform": ("dpmpp_2m", "sgm_uniform", 9, "DPMSolverMultistepScheduler",
                             dict(timestep_spacing="linspace"), None),
    "ddim-ddim_uniform": ("ddim", "ddim_uniform", 4, "DDIMScheduler",
                          dict(timestep_spacing="leading", steps_offset=1, set_alpha_to_one=True), _ddim_ratio),
    "uni_pc_bh2-sgm_uniform": ("uni_pc_bh2", "sgm_uniform", 9, "UniPCMultistepScheduler",
                               dict(timestep_spacing="linspace", solver_order=3, solver_type="bh2"), None),
    "uni_pc_bh2-karras": ("uni_pc_bh2", "karras", 6, "UniPCMultistepScheduler",
                          dict(use_karras_sigmas=True, solver_order=3, solver_type="bh2"), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sd1_matches_diffusers(sd1, case):
    sampler, scheduler, steps, cls, kw, ratio = CASES[case]
    ours, ref = run_pair(sd1, sampler, scheduler, steps, cls, kw, noise_ratio=ratio)
    assert ours.shape == ref.shape == (1, 3, 64, 64)
    assert (ours - ref).abs().max() <= TOL


def test_uni_pc_bh1_matches_diffusers_on_its_sigmas(sd1):
    """bh1 against diffusers: its UniPC bh1 gives NaN when the last sigma is 0 (B_h = -inf times
    0), so both run diffusers' schedule ending at sigma_min (our sampler on explicit sigmas; the
    VP-space result of diffusers is ours times 1/sqrt(1 + sigma_min^2))."""
    ours, ref = run_pair(sd1, "uni_pc", None, 8, "UniPCMultistepScheduler",
                         dict(timestep_spacing="linspace", solver_order=3, solver_type="bh1",
                              final_sigmas_type="sigma_min"), sigmas_from_diffusers=True,
                         vp_output=True)
    assert torch.isfinite(ref).all()
    assert (ours - ref).abs().max() <= TOL


def test_lms_matches_diffusers(sd1, monkeypatch):
    """diffusers' LMS integrates its coefficients with ``scipy.integrate.quad`` (not installed
    here): give its module a quad made of 16-point Gauss-Legendre (exact for the degree <= 3
    polynomials integrated; ours uses 4 points) and compare the sampling itself."""
    import numpy as np
    from diffusers.schedulers import scheduling_lms_discrete as lms_mod

    nodes, weights = np.polynomial.legendre.leggauss(16)

    def quad(fn, a, b, epsrel=None):
        half, mid = (b - a) / 2, (a + b) / 2
        return (half * sum(w * fn(half * x + mid) for x, w in zip(nodes, weights, strict=True)), 0.0)

    if not hasattr(lms_mod, "integrate"):
        monkeypatch.setattr(lms_mod, "integrate", types.SimpleNamespace(quad=quad), raising=False)
    ours, ref = run_pair(sd1, "lms", "normal", 10, lms_mod.LMSDiscreteScheduler, dict(timestep_spacing="linspace"),
                         noise_ratio=_top_ratio)
    assert (ours - ref).abs().max() <= TOL


def test_batch_matches_diffusers_batch(sd1):
    """A batch of 2 from one seed == diffusers' batch of 2 from one generator."""
    ours, ref = run_pair(sd1, "dpmpp_2m", "karras", 5, "DPMSolverMultistepScheduler",
                         dict(use_karras_sigmas=True), batch=2)
    assert ours.shape == (2, 3, 64, 64)
    assert (ours - ref).abs().max() <= TOL
    assert (ours[0] - ours[1]).abs().max() > 1e-2  # the two items got different noise


@pytest.mark.parametrize("case", ["euler-normal", "dpmpp_2m-karras"])
def test_v_prediction_matches_diffusers(sd2, case):
    sampler, scheduler, steps, cls, kw, ratio = CASES[case]
    ours, ref = run_pair(sd2, sampler, scheduler, steps, cls, dict(kw, prediction_type="v_prediction"),
                         noise_ratio=ratio)
    assert (ours - ref).abs().max() <= TOL


def test_oracle_detects_a_wrong_setting(sd1):
    """The comparison is sensitive: starting noise off by 0.2% (sigma_max vs sqrt(1+sigma_max^2))
    already fails the latent check."""
    with pytest.raises(AssertionError, match="latents differ"):
        run_pair(sd1, "euler", "normal", 4, "EulerDiscreteScheduler", dict(timestep_spacing="linspace"),
                 noise_ratio=lambda s: 1.0)


@pytest.mark.parametrize("sampler,scheduler,steps,cls,kw", [
    ("dpm_2", "normal", 4, "KDPM2DiscreteScheduler", dict(timestep_spacing="linspace")),
    ("euler", "karras", 5, "EulerDiscreteScheduler", dict(timestep_spacing="linspace", use_karras_sigmas=True)),
])
def test_fractional_timesteps_match_diffusers(sd1, sampler, scheduler, steps, cls, kw):
    """diffusers' KDPM2 (its midpoint sigmas) and Euler with Karras sigmas call the UNet at the
    fractional timestep interpolated in log-sigma: our ``discrete_timesteps=False`` model option."""
    ours, ref = run_pair(sd1, sampler, scheduler, steps, cls, kw, noise_ratio=_top_ratio,
                         model_options={"discrete_timesteps": False})
    assert (ours - ref).abs().max() <= TOL
