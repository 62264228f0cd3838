"""Schedules: sigma <-> t mapping, ComfyUI-compatible definitions, denoise tails, splitting;
and equality with diffusers' schedulers' sigmas where they coincide."""

from __future__ import annotations

import math

import pytest
import torch

from nodegen.diffusion.model_sampling import ModelSampling
from nodegen.diffusion.schedules import (
    SCHEDULER_NAMES,
    advanced_range,
    get_sigmas,
    karras_sigmas,
    split_sigmas,
    total_steps_for,
)
from nodegen.models.schedule import scaled_linear_alphas_cumprod

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ms():
    return ModelSampling(scaled_linear_alphas_cumprod())


def test_sigma_table(ms):
    ac = scaled_linear_alphas_cumprod()
    assert torch.allclose(ms.sigmas, ((1 - ac) / ac) ** 0.5)
    assert math.isclose(ms.sigma_min, 0.0291675, rel_tol=1e-4)
    assert math.isclose(ms.sigma_max, 14.614642, rel_tol=1e-5)


def test_sigma_t_roundtrip(ms):
    t = torch.tensor([0.0, 1.0, 10.5, 333.0, 500.25, 998.9, 999.0], dtype=torch.float64)
    assert torch.allclose(ms.sigma_to_t(ms.t_to_sigma(t)), t, atol=1e-9)
    # integer timesteps give the table values exactly, and nearest_t rounds in log-sigma
    assert torch.allclose(ms.t_to_sigma(torch.tensor([5.0, 700.0])), ms.sigmas[[5, 700]])
    s = ms.t_to_sigma(torch.tensor([10.4, 10.6]))
    assert ms.nearest_t(s).tolist() == [10.0, 11.0]
    # clamped outside the table
    assert float(ms.sigma_to_t(100.0)) == 999.0 and float(ms.sigma_to_t(1e-4)) == 0.0


def test_nearest_t_of_one_sigma_equals_the_tensor_path(ms):
    """The per-step path (one Python float, by bisection) gives the tensor path's timestep for
    table sigmas, log-midpoints between them (ties go to the lower index, as argmin), their
    neighbouring doubles, random sigmas and values beyond both ends."""
    mids = ((ms.log_sigmas[:-1] + ms.log_sigmas[1:]) / 2).exp()
    near = [math.nextafter(float(m), d) for m in mids[::37] for d in (0.0, math.inf)]
    rand = torch.exp(torch.empty(2000, dtype=torch.float64).uniform_(-5, 4, generator=torch.Generator().manual_seed(0)))
    sigmas = [*ms.sigmas.tolist(), *mids.tolist(), *near, *rand.tolist(), 0.0, 1e-40, 1e6, 3]
    batch = ms.nearest_t(torch.tensor(sigmas, dtype=torch.float64)).tolist()
    one_by_one = [float(ms.nearest_t(s)) for s in sigmas]
    assert one_by_one == batch


def test_eps_and_v_conversion():
    ms_eps = ModelSampling(scaled_linear_alphas_cumprod(), "epsilon")
    ms_v = ModelSampling(scaled_linear_alphas_cumprod(), "v_prediction")
    x0, eps = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    sigma = torch.tensor([0.5, 7.0])
    s = sigma[:, None, None, None]
    x = x0 + s * eps
    assert torch.allclose(ms_eps.denoised(x, sigma, eps), x0, atol=1e-5)
    # v = alpha * eps - sigma_vp * x0 in VP units (alpha = c_in, sigma_vp = s * c_in)
    c_in = 1 / (s**2 + 1) ** 0.5
    v = c_in * eps - s * c_in * x0
    assert torch.allclose(ms_v.denoised(x, sigma, v), x0, atol=1e-5)
    with pytest.raises(ValueError, match="prediction_type"):
        ModelSampling(scaled_linear_alphas_cumprod(), "flow")


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
@pytest.mark.parametrize("steps", [1, 4, 25])
def test_every_schedule_shape(ms, name, steps):
    s = get_sigmas(name, ms, steps)
    assert s.dtype == torch.float32 and s.ndim == 1 and len(s) == steps + 1
    assert s[-1] == 0 and bool((s[1:] < s[:-1]).all())
    assert float(s[0]) <= ms.sigma_max * (1 + 1e-5)


def test_known_values(ms):
    # karras: Karras et al. eq. (5) with the model's range
    k = get_sigmas("karras", ms, 3)
    rho = 7
    mid = ((ms.sigma_max ** (1 / rho) + ms.sigma_min ** (1 / rho)) / 2) ** rho
    assert torch.allclose(k, torch.tensor([ms.sigma_max, mid, ms.sigma_min, 0.0], dtype=torch.float32))
    # exponential: evenly spaced logs
    e = get_sigmas("exponential", ms, 5)[:-1].double().log()
    assert torch.allclose(e[1:] - e[:-1], (e[1] - e[0]).expand(4), atol=1e-6)
    # normal: linspace in t; simple: every 1000/steps-th table entry; ddim_uniform: t = 1 + k * 250
    n = get_sigmas("normal", ms, 4)
    assert torch.allclose(n[:-1].double(), ms.sigmas[[999, 666, 333, 0]], rtol=1e-6)
    assert torch.allclose(get_sigmas("simple", ms, 4)[:-1].double(), ms.sigmas[[999, 749, 499, 249]], rtol=1e-6)
    assert torch.allclose(get_sigmas("ddim_uniform", ms, 4)[:-1].double(), ms.sigmas[[751, 501, 251, 1]], rtol=1e-6)
    assert torch.allclose(get_sigmas("sgm_uniform", ms, 3)[:-1].double(), ms.sigmas[[999, 666, 333]], rtol=1e-6)


def test_linear_quadratic_values(ms):
    # 20 steps: 1 - sigma/sigma_max is k * 0.0025 for k < 10, then 0.0095 k^2 - 0.1875 k + 0.95
    s = get_sigmas("linear_quadratic", ms, 20).double() / ms.sigma_max
    frac = 1 - s
    assert torch.allclose(frac[:10], torch.arange(10, dtype=torch.float64) * 0.0025, atol=1e-6)
    k = torch.arange(10, 20, dtype=torch.float64)
    assert torch.allclose(frac[10:20], 0.0095 * k**2 - 0.1875 * k + 0.95, atol=1e-6)
    assert frac[10] == pytest.approx(0.025, abs=1e-6) and float(s[-1]) == 0.0


def test_matches_diffusers_sigmas(ms):
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    kw = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    e = EulerDiscreteScheduler(**kw, timestep_spacing="linspace")
    e.set_timesteps(10)
    assert torch.allclose(e.sigmas, get_sigmas("normal", ms, 10), rtol=1e-6)
    d = DPMSolverMultistepScheduler(**kw, use_karras_sigmas=True)
    d.set_timesteps(7)
    assert torch.allclose(d.sigmas, get_sigmas("karras", ms, 7), rtol=1e-6)
    # and its rounded UNet timesteps are our nearest_t
    assert d.timesteps.tolist() == [int(t) for t in ms.nearest_t(get_sigmas("karras", ms, 7)[:-1])]
    d = DPMSolverMultistepScheduler(**kw, timestep_spacing="linspace")
    d.set_timesteps(9)
    assert torch.allclose(d.sigmas, get_sigmas("sgm_uniform", ms, 9), rtol=1e-6)


def test_denoise_takes_the_tail(ms):
    full = get_sigmas("karras", ms, 10)
    part = get_sigmas("karras", ms, 5, denoise=0.5)
    assert torch.equal(part, full[-6:])
    assert total_steps_for(3, 0.3) == 10 and total_steps_for(7, 0.7) == 10 and total_steps_for(5, 1.0) == 5
    assert len(get_sigmas("normal", ms, 5, denoise=0.0)) == 0


def test_split_and_advanced_range(ms):
    s = get_sigmas("normal", ms, 10)
    high, low = split_sigmas(s, 6)
    assert len(high) == 7 and len(low) == 5 and high[-1] == low[0]
    assert torch.equal(torch.cat([high, low[1:]]), s)
    # KSamplerAdvanced: steps 0..6 with leftover noise, then 6..end
    first = advanced_range(s, 0, 6, force_full_denoise=False)
    second = advanced_range(s, 6, 10000, force_full_denoise=True)
    assert torch.equal(first, high) and torch.equal(second, low)
    forced = advanced_range(s, 0, 6, force_full_denoise=True)
    assert forced[-1] == 0 and torch.equal(forced[:-1], high[:-1])
    assert advanced_range(s, 10, 10000, True) is None


def test_errors(ms):
    with pytest.raises(ValueError, match="unknown scheduler 'nope'"):
        get_sigmas("nope", ms, 4)
    with pytest.raises(ValueError, match="steps"):
        get_sigmas("normal", ms, 0)


def test_karras_helper_rho():
    s = karras_sigmas(4, 0.1, 10.0, rho=1.0)  # rho = 1: linear
    assert torch.allclose(s, torch.tensor([10.0, 6.7, 3.4, 0.1, 0.0]), atol=1e-5)


def test_beta_distribution_and_schedule(ms):
    from nodegen.diffusion.beta_dist import beta_cdf, beta_ppf

    # closed forms: Beta(1,1) uniform, Beta(2,1) x^2, Beta(1/2,1/2) arcsine law
    assert math.isclose(beta_cdf(0.3, 1, 1), 0.3, rel_tol=1e-12)
    assert math.isclose(beta_cdf(0.3, 2, 1), 0.09, rel_tol=1e-12)
    assert math.isclose(beta_cdf(0.3, 0.5, 0.5), 2 / math.pi * math.asin(math.sqrt(0.3)), rel_tol=1e-12)
    assert math.isclose(beta_ppf(0.25, 0.5, 0.5), math.sin(math.pi / 8) ** 2, rel_tol=1e-12)
    assert math.isclose(beta_cdf(0.5, 0.6, 0.6), 0.5, rel_tol=1e-12)
    # the schedule: timesteps at the quantiles 1, 0.9, ..., 0.1 of the symmetric Beta(0.6, 0.6),
    # so mirror images around the median (499.5, rounded half to even: 500)
    t = [int(v) for v in ms.nearest_t(get_sigmas("beta", ms, 10)[:-1])]
    assert t[0] == 999 and t[5] == 500 and t == sorted(t, reverse=True)
    assert [999 - v for v in t[1:5]] == t[6:][::-1]
