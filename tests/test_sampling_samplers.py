"""Samplers on an analytic problem: Gaussian data N(0, s^2) has the exact denoiser
D(x, sigma) = x * s^2 / (s^2 + sigma^2) and the exact probability-flow ODE solution
x(sigma) = x_T * sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_T^2).

Deterministic samplers must converge to it at their order; stochastic ones must produce the
right distribution (std s) and be reproducible from their noise stream."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nodegen.diffusion.noise import GeneratorNoiseSampler
from nodegen.diffusion.samplers import SAMPLER_NAMES, SAMPLERS, STOCHASTIC, Sampler, get_sampler
from nodegen.diffusion.samplers.lms import linear_multistep_coeff
from nodegen.diffusion.schedules import karras_sigmas

torch.set_num_threads(1)
S2 = 0.25  # data variance


def gaussian_model(x, sigma, **kw):
    sig = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    return x * S2 / (S2 + sig**2)


def _error(name, n, **opts):
    x_t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sig = karras_sigmas(n, 0.03, 14.6).double()[:-1]  # stop at sigma_min: compare with the exact ODE
    out = SAMPLERS[name](gaussian_model, x_t * sig[0], sig, **opts)
    exact = x_t * sig[0] * math.sqrt(S2 + sig[-1] ** 2) / math.sqrt(S2 + sig[0] ** 2)
    return float((out - exact).abs().max() / exact.abs().max())


@pytest.mark.parametrize("name,order,n,opts", [
    ("euler", 0.9, 20, {}), ("ddim", 0.9, 20, {}), ("heun", 1.9, 20, {}), ("dpm_2", 1.9, 20, {}),
    ("lms", 2.5, 20, {}), ("dpmpp_2m", 1.8, 20, {}),
    ("dpmpp_3m_sde", 1.6, 20, {"eta": 0.0}),  # its first-order first step limits it to ~2
    ("uni_pc", 3.0, 40, {"lower_order_final": False}), ("uni_pc_bh2", 3.0, 40, {"lower_order_final": False}),
])
def test_deterministic_convergence_order(name, order, n, opts):
    e1, e2 = _error(name, n, **opts), _error(name, 2 * n, **opts)
    assert e2 < e1
    assert math.log2(e1 / e2) >= order, (e1, e2)


def test_final_step_to_zero_gives_the_denoised():
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    sig = torch.tensor([2.0, 0.0], dtype=torch.float64)
    for name in ("euler", "heun", "dpmpp_2m", "uni_pc", "lms", "dpmpp_2m_sde", "euler_ancestral", "lcm"):
        ns = GeneratorNoiseSampler(torch.Generator().manual_seed(1), x.shape, dtype=torch.float64)
        out = SAMPLERS[name](gaussian_model, x, sig, noise_sampler=ns)
        assert torch.allclose(out, gaussian_model(x, sig[:1])), name


@pytest.mark.parametrize("name", ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde",
                                  "dpmpp_2m_sde", "dpmpp_3m_sde"])
def test_stochastic_samplers_sample_the_distribution(name):
    g = torch.Generator().manual_seed(0)
    sig = karras_sigmas(100, 0.03, 14.6)
    x_t = torch.randn(1, 4, 64, 64, generator=g) * math.sqrt(S2 + float(sig[0]) ** 2)
    out = SAMPLERS[name](gaussian_model, x_t, sig, noise_sampler=GeneratorNoiseSampler(g, x_t.shape))
    assert abs(float(out.std()) - math.sqrt(S2)) < 0.05 * math.sqrt(S2)
    assert abs(float(out.mean())) < 0.02
    # the noise really enters: the result forgets most of the starting point
    assert float(torch.corrcoef(torch.stack([out.flatten(), x_t.flatten()]))[0, 1]) < 0.3
    # and its level matters: too much step noise gives a visibly wrong spread
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(1, 4, 64, 64, generator=g) * math.sqrt(S2 + float(sig[0]) ** 2)
    loud = SAMPLERS[name](gaussian_model, x_t, sig, noise_sampler=GeneratorNoiseSampler(g, x_t.shape), s_noise=1.5)
    assert float(loud.std()) > 1.1 * math.sqrt(S2)


@pytest.mark.parametrize("name", sorted(STOCHASTIC))
def test_stochastic_reproducible_from_the_noise_stream(name):
    sig = karras_sigmas(5, 0.03, 14.6)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * 14.6

    def run(seed):
        return SAMPLERS[name](gaussian_model, x, sig,
                              noise_sampler=GeneratorNoiseSampler(torch.Generator().manual_seed(seed), x.shape))

    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))
    # with the seed in extra_args and no noise sampler, the default sampler is seeded too
    a = SAMPLERS[name](gaussian_model, x, sig, extra_args={"seed": 5})
    b = SAMPLERS[name](gaussian_model, x, sig, extra_args={"seed": 5})
    assert torch.equal(a, b)


def test_lms_coefficients_are_exact_integrals():
    t = np.array([10.0, 6.0, 3.5, 1.7, 0.6, 0.1])
    for i in range(len(t) - 1):
        order = min(i + 1, 4)
        coeffs = [linear_multistep_coeff(order, t, i, j) for j in range(order)]
        # sum of the Lagrange basis is 1: the coefficients integrate a constant exactly
        assert math.isclose(sum(coeffs), t[i + 1] - t[i], rel_tol=1e-12)
        # and they integrate any polynomial of degree < order exactly
        nodes = [t[i - j] for j in range(order)]
        poly = np.poly1d(np.arange(1, order + 1, dtype=float))
        approx = sum(c * poly(nd) for c, nd in zip(coeffs, nodes, strict=True))
        exact = poly.integ()(t[i + 1]) - poly.integ()(t[i])
        assert math.isclose(approx, exact, rel_tol=1e-10)


def test_sampler_registry_and_value():
    assert {"euler", "euler_ancestral", "heun", "dpm_2", "lms", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_sde",
            "ddim", "uni_pc", "lcm", "dpm_2_ancestral", "dpmpp_2s_ancestral"} <= set(SAMPLER_NAMES)
    s = get_sampler("heun")
    assert isinstance(s, Sampler) and s.name == "heun" and not s.stochastic
    assert get_sampler("euler_ancestral").stochastic
    with pytest.raises(ValueError, match="unknown sampler 'eulr'"):
        get_sampler("eulr")
    # options are passed through: eta = 0 makes euler_ancestral plain euler
    x = torch.randn(1, 4, 4, 4) * 14.6
    sig = karras_sigmas(4, 0.03, 14.6)
    assert torch.allclose(get_sampler("euler_ancestral", eta=0.0)(gaussian_model, x, sig),
                          get_sampler("euler")(gaussian_model, x, sig), atol=1e-6)


def test_callback_once_per_step():
    seen = []
    sig = karras_sigmas(6, 0.03, 14.6)
    x = torch.randn(1, 4, 4, 4) * 14.6
    for name in SAMPLER_NAMES:
        if name == "dpm_adaptive":  # reports per attempted step (its own count; test_sampling_extra_samplers)
            continue
        seen.clear()
        SAMPLERS[name](gaussian_model, x, sig, callback=lambda info: seen.append(info["i"]),
                       extra_args={"seed": 0})
        assert seen == list(range(6)), name
