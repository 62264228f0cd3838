"""The samplers and schedules published ComfyUI workflows pick (res_multistep, deis, ddpm, the
CFG++ variants; Align Your Steps, Laplace), each against an oracle: diffusers where it has the
algorithm, else the published formula computed independently here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nodegen.diffusion.align_your_steps import ays_sigmas
from nodegen.diffusion.noise import GeneratorNoiseSampler
from nodegen.diffusion.samplers import SAMPLER_NAMES, SAMPLERS, STOCHASTIC
from nodegen.diffusion.samplers.deis import deis_coefficients
from nodegen.diffusion.schedules import karras_sigmas, laplace_sigmas

torch.set_num_threads(1)
S2 = 0.25


def gaussian(s2):
    def model(x, sigma, **kw):
        sig = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        return x * s2 / (s2 + sig**2)
    return model


class GuidedModel:
    """A Denoiser-like model: two analytic denoisers (cond, uncond) combined by CFG; it keeps the
    unconditional prediction like nodegen.diffusion.denoiser.Denoiser does."""

    def __init__(self, cfg: float):
        self.cond, self.uncond, self.cfg = gaussian(0.25), gaussian(0.6), cfg
        self.keep_uncond = False
        self.last_uncond = None

    def __call__(self, x, sigma, **kw):
        c, u = self.cond(x, sigma), self.uncond(x, sigma)
        self.last_uncond = u
        return u + (c - u) * self.cfg


def _start(n=8, seed=0):
    sig = karras_sigmas(n, 0.03, 14.6).double()
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * sig[0]
    return x, sig


def test_new_names_are_offered():
    assert {"res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp",
            "deis", "ddpm", "euler_cfg_pp", "euler_ancestral_cfg_pp", "dpmpp_2m_cfg_pp",
            "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde_gpu", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde_gpu"} <= set(SAMPLER_NAMES)
    assert {"ddpm", "res_multistep_ancestral", "euler_ancestral_cfg_pp"} <= STOCHASTIC


@pytest.mark.parametrize("cfg_pp, plain", [("euler_cfg_pp", "euler"), ("dpmpp_2m_cfg_pp", "dpmpp_2m"),
                                           ("res_multistep_cfg_pp", "res_multistep")])
def test_cfg_pp_without_an_unconditional_prediction_is_the_plain_sampler(cfg_pp, plain):
    x, sig = _start()
    assert torch.allclose(SAMPLERS[cfg_pp](gaussian(S2), x, sig), SAMPLERS[plain](gaussian(S2), x, sig),
                          atol=1e-10)


def test_euler_cfg_pp_formula():
    """CFG++ (Chung et al. 2024, Algorithm 1 in sigma form): x' = D_cfg + sigma' (x - D_uncond) / sigma."""
    x, sig = _start()
    model = GuidedModel(3.0)
    got = SAMPLERS["euler_cfg_pp"](model, x, sig)
    assert model.keep_uncond is True
    ref = GuidedModel(3.0)
    y = x
    for i in range(len(sig) - 1):
        s = sig[i].reshape(1)
        d_cfg, d_u = ref(y, s), ref.uncond(y, s)
        y = d_cfg + sig[i + 1] * (y - d_u) / sig[i]
    assert torch.allclose(got, y, atol=1e-10)
    assert not torch.allclose(got, SAMPLERS["euler"](GuidedModel(3.0), x, sig))


def test_dpmpp_2m_cfg_pp_formula():
    x, sig = _start()
    got = SAMPLERS["dpmpp_2m_cfg_pp"](GuidedModel(2.0), x, sig)
    ref = GuidedModel(2.0)
    y, old_u = x, None
    lam = [-math.log(float(s)) if s > 0 else math.inf for s in sig]
    for i in range(len(sig) - 1):
        s = sig[i].reshape(1)
        d, u = ref(y, s), ref.uncond(y, s)
        if sig[i + 1] == 0:
            y = d
        else:
            h = lam[i + 1] - lam[i]
            e = math.exp(-h)
            # exponential integrator: the previous-step slope corrects the guided target
            y = e * (y - u) + d + (0 if old_u is None else
                                   -(math.expm1(-h)) * (h / (lam[i] - lam[i - 1])) / 2 * (d - old_u))
        old_u = u
    assert torch.allclose(got, y, atol=1e-9)


def _res_reference(x, sig, model, cfg_pp, eta=0.0, noise=None):
    """RES 2nd-order multistep (arXiv:2308.02157, ComfyUI's res_multistep), written out."""
    def phi1(z):
        return math.expm1(z) / z

    def phi2(z):
        return (phi1(z) - 1) / z

    y, old, old_down = x, None, None
    for i in range(len(sig) - 1):
        s, s_next = float(sig[i]), float(sig[i + 1])
        d = model(y, sig[i].reshape(1))
        u = model.uncond(y, sig[i].reshape(1)) if cfg_pp else d
        up = min(s_next, eta * math.sqrt(s_next**2 * (s**2 - s_next**2) / s**2)) if eta else 0.0
        down = math.sqrt(s_next**2 - up**2)
        if down == 0 or old is None:
            y = d + (y - u) / s * down if cfg_pp else y + (y - d) / s * (down - s)
        else:
            h = math.log(s) - math.log(down)
            c2 = (math.log(old_down) - math.log(float(sig[i - 1]))) / h
            b2 = phi2(-h) / c2
            b1 = phi1(-h) - b2
            if cfg_pp:
                y = y + (d - u)
            y = math.exp(-h) * y + h * (b1 * u + b2 * old)
        if s_next > 0 and eta:
            y = y + noise(s, s_next) * up
        old, old_down = u, down
    return y


@pytest.mark.parametrize("name, cfg_pp", [("res_multistep", False), ("res_multistep_cfg_pp", True)])
def test_res_multistep_formula(name, cfg_pp):
    x, sig = _start()
    got = SAMPLERS[name](GuidedModel(2.5), x, sig)
    assert torch.allclose(got, _res_reference(x, sig, GuidedModel(2.5), cfg_pp), atol=1e-9)


def test_res_multistep_ancestral_formula():
    x, sig = _start()
    ns = GeneratorNoiseSampler(torch.Generator().manual_seed(4), x.shape, dtype=torch.float64)
    got = SAMPLERS["res_multistep_ancestral"](GuidedModel(2.5), x, sig, noise_sampler=ns)
    ns = GeneratorNoiseSampler(torch.Generator().manual_seed(4), x.shape, dtype=torch.float64)
    ref = _res_reference(x, sig, GuidedModel(2.5), False, eta=1.0, noise=ns)
    assert torch.allclose(got, ref, atol=1e-9)


def _ode_error(name, n):
    x_t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sig = karras_sigmas(n, 0.03, 14.6).double()[:-1]
    out = SAMPLERS[name](gaussian(S2), x_t * sig[0], sig)
    exact = x_t * sig[0] * math.sqrt(S2 + sig[-1] ** 2) / math.sqrt(S2 + sig[0] ** 2)
    return float((out - exact).abs().max() / exact.abs().max())


@pytest.mark.parametrize("name, order", [("res_multistep", 1.8), ("deis", 2.3)])
def test_multistep_convergence_order(name, order):
    e1, e2 = _ode_error(name, 20), _ode_error(name, 40)
    assert math.log2(e1 / e2) >= order, (e1, e2)


def test_deis_coefficients_match_the_reference_riemann_sum():
    """The reference (zju-pi/diff-sampler's tAB-DEIS, used by ComfyUI) integrates the Lagrange
    basis in VP time against -0.5 dlog(alpha)/dtau / sqrt(alpha (1 - alpha)) with 10,000 points."""
    sig = karras_sigmas(6, 0.03, 14.6).double()
    beta_d = 2 * (math.log(0.002**2 + 1) / 1e-3 - math.log(80.0**2 + 1)) / (1e-3 - 1)
    beta_min = math.log(80.0**2 + 1) - 0.5 * beta_d
    t = ((beta_min**2 + 2 * beta_d * torch.log(sig**2 + 1)).sqrt() - beta_min) / beta_d
    got = deis_coefficients(sig, max_order=3)
    for i in range(1, len(sig) - 2):
        order = min(i + 1, 3)
        taus = torch.linspace(float(t[i]), float(t[i + 1]), 10000, dtype=torch.float64)
        dtau = (t[i + 1] - t[i]) / 10000
        alpha = torch.exp(-0.5 * taus**2 * beta_d - taus * beta_min)
        dlog = -(beta_d * taus + beta_min)
        integrand = -0.5 * dlog / torch.sqrt(alpha * (1 - alpha))
        prev = [t[i - k] for k in range(order)]
        for j in range(order):
            poly = torch.ones_like(taus)
            for k in range(order):
                if k != j:
                    poly = poly * (taus - prev[k]) / (prev[j] - prev[k])
            ref = float((integrand * poly).sum() * dtau)
            assert math.isclose(got[i][j], ref, rel_tol=2e-3, abs_tol=1e-4), (i, j, got[i][j], ref)
        # the weights integrate a constant exactly: they sum to the step in sigma
        assert math.isclose(sum(got[i]), float(sig[i + 1] - sig[i]), rel_tol=1e-9)


def test_ddpm_steps_equal_diffusers_ddpm_scheduler():
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          variance_type="fixed_small", clip_sample=False)
    sched.set_timesteps(10)
    ts = sched.timesteps
    acp = sched.alphas_cumprod.double()
    sig = torch.cat([((1 - acp[ts]) / acp[ts]).sqrt(), torch.zeros(1, dtype=torch.float64)])
    g = torch.Generator().manual_seed(0)
    eps_of = gaussian(S2)
    x = torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64)
    # diffusers on the VP latent, with the model's eps
    sample = x.clone().float()
    gen = torch.Generator().manual_seed(7)
    for k, t in enumerate(ts):
        x_k = sample.double() * (1 + sig[k] ** 2).sqrt()
        eps = ((x_k - eps_of(x_k, sig[k].reshape(1))) / sig[k]).float()
        sample = sched.step(eps, t, sample, generator=gen).prev_sample
    ns = GeneratorNoiseSampler(torch.Generator().manual_seed(7), x.shape, dtype=torch.float32)
    ours = SAMPLERS["ddpm"](eps_of, x * (1 + sig[0] ** 2).sqrt(), sig,
                            noise_sampler=lambda a, b: ns(a, b).double())
    assert torch.allclose(ours.float(), sample, atol=1e-4), float((ours.float() - sample).abs().max())


# -- schedules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("family, key", [("SD1", "StableDiffusionSigmas"), ("SDXL", "StableDiffusionXLSigmas")])
def test_align_your_steps_equals_diffusers_table(family, key):
    from diffusers.schedulers import AysSchedules

    # diffusers' table: the published levels rounded through its timestep list (within 0.4 % or 0.002)
    want = torch.tensor(AysSchedules[key], dtype=torch.float32)
    got = ays_sigmas(family, 10)
    assert torch.allclose(got[:-1], want[:-1], rtol=4e-3, atol=2e-3) and got[-1] == 0
    # other step counts: log-linear interpolation of the published levels (the authors' recipe)
    levels = np.array(AysSchedules[key][:-1] + [0.0291671582], dtype=np.float64)  # ends at sigma_min
    xs = np.linspace(0, 1, len(levels))
    want15 = np.exp(np.interp(np.linspace(0, 1, 16), xs, np.log(levels[::-1])))[::-1]
    got15 = ays_sigmas(family, 15)
    assert len(got15) == 16 and got15[-1] == 0
    assert np.allclose(got15[:-1].numpy(), want15[:-1], rtol=4e-3, atol=2e-3)
    # denoise: the tail of the schedule
    assert torch.equal(ays_sigmas(family, 10, 0.5)[:-1], got[-6:-1]) and len(ays_sigmas(family, 10, 0.5)) == 6


def test_laplace_schedule_formula():
    """Hang et al. 2024: lambda = mu - beta * sign(0.5 - x) * log(1 - 2|0.5 - x|), sigma = e^lambda."""
    got = laplace_sigmas(9, 0.03, 14.6, mu=0.2, beta=0.7)
    xs = [k / 8 for k in range(9)]
    want = []
    for x in xs:
        sign = (0.5 - x > 0) - (0.5 - x < 0)
        lam = 0.2 - 0.7 * sign * math.log(1 - 2 * abs(0.5 - x) + 1e-5)
        want.append(min(max(math.exp(lam), 0.03), 14.6))
    assert torch.allclose(got, torch.tensor(want + [0.0]), rtol=1e-6)
    assert bool((got[1:] <= got[:-1]).all())


# -- through the real denoiser ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd1_parts(tmp_path_factory):
    from nodegen.models.objects import DiffusionModel, TextEncoder
    from tests.support.fixtures import fixture

    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    model = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    return model, te.encode("a cat"), te.encode("blurry")


def test_denoiser_keeps_the_unconditional_prediction(sd1_parts):
    from nodegen.diffusion.denoiser import Denoiser

    model, pos, neg = sd1_parts
    lat = torch.zeros(1, 4, 8, 8)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 3
    sigma = torch.tensor([3.0])
    with model.use(None, None) as unet:
        guided = Denoiser(model, unet, pos, neg, 4.0, latent_image=lat)
        out = guided(x, sigma)
        alone = Denoiser(model, unet, neg, None, 1.0, latent_image=lat)(x, sigma)
        assert torch.allclose(guided.last_uncond, alone, atol=1e-5)
        cond = Denoiser(model, unet, pos, None, 1.0, latent_image=lat)(x, sigma)
        assert torch.allclose(out, alone + 4.0 * (cond - alone), atol=1e-4)
        # at cfg 1 the negative is skipped, unless a CFG++ sampler asks for it
        one = Denoiser(model, unet, pos, neg, 1.0, latent_image=lat)
        one(x, sigma)
        assert torch.allclose(one.last_uncond, cond, atol=1e-6)
        one.keep_uncond = True
        one(x, sigma)
        assert torch.allclose(one.last_uncond, alone, atol=1e-5)


@pytest.mark.parametrize("name", ["euler_cfg_pp", "res_multistep", "deis", "ddpm", "dpmpp_2s_ancestral_cfg_pp"])
def test_new_samplers_run_in_ksampler(sd1_parts, name):
    from nodegen.diffusion.sample import Steps, sample

    model, pos, neg = sd1_parts
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    cfg = 1.0 if "cfg_pp" in name else 5.0
    a = sample(model, pos, neg, lat, 3, Steps(3), cfg, name).latent["samples"]
    b = sample(model, pos, neg, lat, 3, Steps(3), cfg, name).latent["samples"]
    assert torch.isfinite(a).all() and torch.equal(a, b)
    if "cfg_pp" in name:  # at cfg 1 CFG++ still renoises along the negative prompt (ComfyUI's rule)
        plain = sample(model, pos, neg, lat, 3, Steps(3), 1.0, name.replace("_cfg_pp", "")).latent["samples"]
        assert not torch.allclose(a, plain, atol=1e-4)
