"""The further samplers published ComfyUI workflows pick (ipndm, ipndm_v, heunpp2,
gradient_estimation, ...), each against the published algorithm written out independently here
(diffusers has none of them), plus one run through KSampler on the SD1 fixture."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nodegen.diffusion.noise import GeneratorNoiseSampler
from nodegen.diffusion.samplers import SAMPLER_NAMES, SAMPLERS, STOCHASTIC
from nodegen.diffusion.samplers.dpm_solver import fast_orders
from nodegen.diffusion.samplers.ipndm import variable_weights
from nodegen.diffusion.schedules import karras_sigmas

torch.set_num_threads(1)
S2 = 0.25
NEW = ["ipndm", "ipndm_v", "heunpp2", "gradient_estimation", "dpm_fast", "dpm_adaptive", "er_sde", "seeds_2",
       "seeds_3", "sa_solver", "sa_solver_pece"]


def gaussian(x, sigma, **kw):
    sig = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    return x * S2 / (S2 + sig**2)


def _start(n=9, seed=0):
    sig = karras_sigmas(n, 0.03, 14.6).double()
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * sig[0]
    return x, sig


def _eps(y, s):
    return (y - gaussian(y, s.reshape(1))) / s


def _ode_error(name, n):
    x_t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sig = karras_sigmas(n, 0.03, 14.6).double()[:-1]
    out = SAMPLERS[name](gaussian, x_t * sig[0], sig)
    exact = x_t * sig[0] * math.sqrt(S2 + sig[-1] ** 2) / math.sqrt(S2 + sig[0] ** 2)
    return float((out - exact).abs().max() / exact.abs().max())


def test_names_are_offered():
    assert set(NEW) <= set(SAMPLER_NAMES)
    assert set(NEW) & STOCHASTIC == {"er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece"}


# -- iPNDM --------------------------------------------------------------------------------------

def _ipndm_reference(x, sig, coeffs_of):
    """Adams-Bashforth on dx/dsigma = eps, warming up from Euler; ``coeffs_of(i, order)``."""
    y, olds = x, []
    for i in range(len(sig) - 1):
        e = _eps(y, sig[i])
        order = min(4, i + 1)
        if sig[i + 1] == 0:
            y = y - sig[i] * e
        else:
            c = coeffs_of(i, order)
            y = y + (sig[i + 1] - sig[i]) * (c[0] * e + sum(ck * o for ck, o in zip(c[1:], olds[::-1], strict=True)))
        olds = (olds + [e])[-3:]
    return y


def test_ipndm_is_fourth_order_adams_bashforth():
    fixed = {1: [1], 2: [1.5, -0.5], 3: [23 / 12, -4 / 3, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -3 / 8]}
    x, sig = _start()
    ref = _ipndm_reference(x, sig, lambda i, order: fixed[order])
    assert torch.allclose(SAMPLERS["ipndm"](gaussian, x, sig), ref, atol=1e-10)


def _ipndm_v_published(h):
    """diff-sampler's ipndm_v weights (zju-pi, Apache 2), in its own notation."""
    order = len(h)
    if order == 1:
        return [1.0]
    hn, hn1 = h[0], h[1]
    c = [(2 + hn / hn1) / 2, -(hn / hn1) / 2]
    if order == 2:
        return c
    hn2 = h[2]
    temp1 = (1 - hn / (3 * (hn + hn1)) * (hn * (hn + hn1)) / (hn1 * (hn1 + hn2))) / 2
    if order == 3:
        return [c[0] + temp1, c[1] - (1 + hn1 / hn2) * temp1, temp1 * hn1 / hn2]
    hn3 = h[3]
    temp2 = ((1 - hn / (3 * (hn + hn1))) / 2 + (1 - hn / (2 * (hn + hn1))) * hn / (6 * (hn + hn1 + hn2))) \
        * (hn * (hn + hn1) * (hn + hn1 + hn2)) / (hn1 * (hn1 + hn2) * (hn1 + hn2 + hn3))
    ratio = hn1 * (hn1 + hn2) / (hn2 * (hn2 + hn3))
    return [c[0] + temp1 + temp2,
            c[1] - (1 + hn1 / hn2) * temp1 - (1 + hn1 / hn2 + ratio) * temp2,
            temp1 * hn1 / hn2 + (hn1 / hn2 + ratio * (1 + hn2 / hn3)) * temp2,
            -temp2 * ratio * hn1 / hn2]


def test_ipndm_v_follows_the_published_variable_step_weights():
    x, sig = _start()
    s = [float(v) for v in sig]

    def coeffs(i, order):
        return _ipndm_v_published([s[i + 1 - k] - s[i - k] for k in range(order)])

    got = SAMPLERS["ipndm_v"](gaussian, x, sig)
    assert torch.allclose(got, _ipndm_reference(x, sig, coeffs), atol=1e-10)
    assert not torch.allclose(got, SAMPLERS["ipndm"](gaussian, x, sig), atol=1e-4)


def test_ipndm_v_weights():
    # even spacing: up to third order the constant-step Adams-Bashforth weights (ipndm_v == ipndm);
    # the published fourth-order form is not AB4 there, and ComfyUI runs it as published
    assert np.allclose(variable_weights([-1.0] * 3), [23 / 12, -16 / 12, 5 / 12])
    assert np.allclose(variable_weights([-1.0] * 4), [57 / 24, -65 / 24, 43 / 24, -11 / 24])
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 10
    even = torch.linspace(10, 0.5, 8, dtype=torch.float64)
    assert torch.allclose(SAMPLERS["ipndm_v"](gaussian, x, even, max_order=3),
                          SAMPLERS["ipndm"](gaussian, x, even, max_order=3), atol=1e-12)
    # second order: the exact integral of the line through the last two slopes
    h0, h1 = -0.7, -1.3
    nodes = [0.0, -h1]  # sigma_i and sigma_i-1, measured from sigma_i
    exact = []
    for j in range(2):
        basis = np.poly1d([1.0, -nodes[1 - j]]) / (nodes[j] - nodes[1 - j])
        exact.append((basis.integ()(h0) - basis.integ()(0.0)) / h0)
    assert np.allclose(variable_weights([h0, h1]), exact)
    # up to third order the weights sum to 1 (they integrate a constant slope exactly); the
    # published fourth-order form does only on even spacing
    rng = np.random.default_rng(0)
    for _ in range(5):
        h = list(-rng.uniform(0.2, 2.0, 3))
        assert math.isclose(sum(variable_weights(h)), 1.0, rel_tol=1e-12)
        assert math.isclose(sum(variable_weights(h[:2])), 1.0, rel_tol=1e-12)


def test_ipndm_v_is_high_order_on_uneven_steps():
    e1, e2 = _ode_error("ipndm_v", 20), _ode_error("ipndm_v", 40)
    assert math.log2(e1 / e2) >= 2.5, (e1, e2)


# -- Heun++ and gradient estimation ----------------------------------------------------------------

def _heunpp2_reference(x, sig):
    y, n = x, len(sig) - 1
    for i in range(n):
        dt = sig[i + 1] - sig[i]
        d = _eps(y, sig[i])
        if i == n - 1:
            y = y + d * dt
        elif i == n - 2:
            d2 = _eps(y + d * dt, sig[i + 1])
            w = sig[i + 1] / (2 * sig[0])
            y = y + ((1 - w) * d + w * d2) * dt
        else:
            y2 = y + d * dt
            d2 = _eps(y2, sig[i + 1])
            d3 = _eps(y2 + d2 * (sig[i + 2] - sig[i + 1]), sig[i + 2])
            w2, w3 = sig[i + 1] / (3 * sig[0]), sig[i + 2] / (3 * sig[0])
            y = y + ((1 - w2 - w3) * d + w2 * d2 + w3 * d3) * dt
    return y


def test_heunpp2_formula_and_evaluations():
    x, sig = _start()
    calls = []

    def counted(y, s, **kw):
        calls.append(float(s[0]))
        return gaussian(y, s)

    got = SAMPLERS["heunpp2"](counted, x, sig)
    assert torch.allclose(got, _heunpp2_reference(x, sig), atol=1e-10)
    n = len(sig) - 1
    assert len(calls) == 3 * (n - 2) + 2 + 1


def test_gradient_estimation_formula():
    x, sig = _start()
    y, old = x, None
    for i in range(len(sig) - 1):
        d = _eps(y, sig[i])
        slope = d if old is None or sig[i + 1] == 0 else 2.5 * d - 1.5 * old
        y = y + slope * (sig[i + 1] - sig[i])
        old = d
    assert torch.allclose(SAMPLERS["gradient_estimation"](gaussian, x, sig, ge_gamma=2.5), y, atol=1e-10)
    # ge_gamma 1 is plain Euler
    assert torch.allclose(SAMPLERS["gradient_estimation"](gaussian, x, sig, ge_gamma=1.0),
                          SAMPLERS["euler"](gaussian, x, sig), atol=1e-12)


# -- DPM-Solver-fast and adaptive ----------------------------------------------------------------

def _exact_at(x, sig_from, sig_to):
    """The probability-flow ODE of the Gaussian toy model, solved exactly."""
    return x * math.sqrt(S2 + sig_to**2) / math.sqrt(S2 + sig_from**2)


def _dpm_solver_vp_reference(x_ve, sig_max, sig_min, orders):
    """DPM-Solver-1/2/3 (arXiv:2206.00927, Algorithms 1 and 2 with r1 = 1/3, r2 = 2/3; steps
    uniform in lambda) written in the paper's VP coordinates: x = alpha x0 + sigma eps with
    alpha = 1 / sqrt(1 + s^2), sigma = s alpha for the VE noise level s, lambda = log(alpha / sigma)."""
    def vp(s):
        a = 1 / math.sqrt(1 + s * s)
        return a, s * a

    def eps_vp(x, lam):
        s = math.exp(-lam)
        a, _ = vp(s)
        x_ve = x / a
        return (x_ve - gaussian(x_ve, torch.tensor([s], dtype=x.dtype))) / s

    def point(lam):  # alpha, sigma at lambda
        return vp(math.exp(-lam))

    lams = np.linspace(-math.log(sig_max), -math.log(sig_min), len(orders) + 1)
    x = x_ve * vp(sig_max)[0]
    for i, order in enumerate(orders):
        ls, lt = float(lams[i]), float(lams[i + 1])
        h = lt - ls
        (a_s, _), (a_t, s_t) = point(ls), point(lt)
        e0 = eps_vp(x, ls)
        if order == 1:
            x = a_t / a_s * x - s_t * math.expm1(h) * e0
            continue
        r1 = 0.5 if order == 2 else 1 / 3
        l1 = ls + r1 * h
        a1, s1 = point(l1)
        u1 = a1 / a_s * x - s1 * math.expm1(r1 * h) * e0
        e1 = eps_vp(u1, l1)
        if order == 2:
            x = a_t / a_s * x - s_t * math.expm1(h) * e0 - s_t / (2 * r1) * math.expm1(h) * (e1 - e0)
            continue
        r2 = 2 / 3
        l2 = ls + r2 * h
        a2, s2 = point(l2)
        u2 = (a2 / a_s * x - s2 * math.expm1(r2 * h) * e0
              - s2 * r2 / r1 * (math.expm1(r2 * h) / (r2 * h) - 1) * (e1 - e0))
        e2 = eps_vp(u2, l2)
        x = a_t / a_s * x - s_t * math.expm1(h) * e0 - s_t / r2 * (math.expm1(h) / h - 1) * (e2 - e0)
    return x / vp(sig_min)[0]


def test_dpm_fast_orders_use_every_evaluation():
    assert fast_orders(9) == [3, 3, 2, 1] and fast_orders(10) == [3, 3, 3, 1] and fast_orders(11) == [3, 3, 3, 2]
    assert all(sum(fast_orders(n)) == n for n in range(1, 40))


@pytest.mark.parametrize("nfe", [8, 9, 10])
def test_dpm_fast_equals_the_paper_algorithm(nfe):
    x, _ = _start()
    sig = karras_sigmas(nfe, 0.03, 14.6).double()  # only its ends matter: 14.6 down to 0.03
    seen = []
    got = SAMPLERS["dpm_fast"](gaussian, x, sig, callback=lambda info: seen.append(info["i"]))
    assert seen == list(range(nfe))  # one report per model evaluation: progress counts the steps
    ref = _dpm_solver_vp_reference(x, 14.6, 0.03, fast_orders(nfe))
    assert torch.allclose(got, ref, atol=1e-9), float((got - ref).abs().max())
    # it stops at the smallest nonzero sigma, close to the exact ODE solution there
    exact = _exact_at(x, 14.6, 0.03)
    assert float((got - exact).abs().max()) < 0.1 * float(exact.abs().max())


def test_dpm_fast_is_high_order():
    x, _ = _start()
    exact = _exact_at(x, 14.6, 0.03)

    def err(nfe):
        out = SAMPLERS["dpm_fast"](gaussian, x, karras_sigmas(nfe, 0.03, 14.6).double())
        return float((out - exact).abs().max())

    e1, e2 = err(15), err(30)
    assert math.log2(e1 / e2) >= 2.5, (e1, e2)


@pytest.mark.parametrize("order", [2, 3])
def test_dpm_adaptive_meets_its_tolerance(order):
    x, sig = _start()
    exact = _exact_at(x, 14.6, 0.03)
    calls = {}

    def run(rtol):
        n = [0]

        def counted(y, s, **kw):
            n[0] += 1
            return gaussian(y, s)

        out = SAMPLERS["dpm_adaptive"](counted, x, sig, order=order, rtol=rtol, atol=1e-4)
        calls[rtol] = n[0]
        return float((out - exact).abs().max() / exact.abs().max())

    loose, tight = run(0.05), run(0.001)
    assert tight < 5e-3 and tight < loose
    assert calls[0.001] > calls[0.05] and calls[0.05] % order == 0
    with pytest.raises(ValueError, match="order must be 2 or 3"):
        SAMPLERS["dpm_adaptive"](gaussian, x, sig, order=1)


# -- ER-SDE ----------------------------------------------------------------------------------------

def _er_sde_reference(x, sig, noise, s_noise=1.0):
    """ER-SDE-Solver-3 (arXiv:2309.06169, VE form: lambda = sigma) with the paper's ER-SDE-5 noise
    scale phi(l) = l (e^(l^0.3) + 10); its integrals as 200-point left sums, in numpy."""
    def phi(v):
        return v * (math.exp(v**0.3) + 10)

    lam = [float(v) for v in sig]
    y, hist, d1_old = x, [], None
    for i in range(len(lam) - 1):
        den = gaussian(y, sig[i].reshape(1))
        if lam[i + 1] == 0:
            y = den
            break
        ls, lt = lam[i], lam[i + 1]
        r = phi(lt) / phi(ls)
        y = r * y + (1 - r) * den
        grid = lt + np.arange(200) * (ls - lt) / 200
        w = (ls - lt) / 200
        if i >= 1:
            d1 = (den - hist[-1]) / (ls - lam[i - 1])
            s1 = sum(w / phi(g) for g in grid)
            y = y + (lt - ls + s1 * phi(lt)) * d1
            if i >= 2:
                d2 = (d1 - d1_old) / ((ls - lam[i - 2]) / 2)
                s2 = sum(w * (g - ls) / phi(g) for g in grid)
                y = y + ((lt - ls) ** 2 / 2 + s2 * phi(lt)) * d2
            d1_old = d1
        y = y + noise(sig[i], sig[i + 1]) * s_noise * math.sqrt(max(lt**2 - ls**2 * r**2, 0.0))
        hist.append(den)
    return y


def _noise(seed, shape):
    return GeneratorNoiseSampler(torch.Generator().manual_seed(seed), shape, dtype=torch.float64)


def test_er_sde_equals_the_paper_algorithm_with_the_same_noise():
    x, sig = _start()
    got = SAMPLERS["er_sde"](gaussian, x, sig, noise_sampler=_noise(3, x.shape))
    ref = _er_sde_reference(x, sig, _noise(3, x.shape))
    assert torch.allclose(got, ref, atol=1e-9), float((got - ref).abs().max())
    # reproducible per seed, and the seed matters
    assert torch.equal(SAMPLERS["er_sde"](gaussian, x, sig, extra_args={"seed": 5}),
                       SAMPLERS["er_sde"](gaussian, x, sig, extra_args={"seed": 5}))
    assert not torch.allclose(got, SAMPLERS["er_sde"](gaussian, x, sig, noise_sampler=_noise(4, x.shape)))


def test_er_sde_quadrature_and_ode_mode():
    from scipy.integrate import quad

    from nodegen.diffusion.samplers.er_sde import _riemann, noise_scaler_for

    phi = noise_scaler_for()
    lo, hi = torch.tensor(0.6, dtype=torch.float64), torch.tensor(1.4, dtype=torch.float64)
    exact = quad(lambda v: 1 / float(phi(torch.tensor(v))), 0.6, 1.4)[0]
    assert math.isclose(float(_riemann(lambda v: 1 / phi(v), lo, hi)), exact, rel_tol=1e-2)
    # ODE mode, one stage: phi(l) = l makes the step DDIM's, i.e. Euler in sigma
    x, sig = _start()
    assert torch.allclose(SAMPLERS["er_sde"](gaussian, x, sig, solver_type="ODE", max_stage=1),
                          SAMPLERS["euler"](gaussian, x, sig), atol=1e-10)
    with pytest.raises(ValueError, match="solver_type"):
        SAMPLERS["er_sde"](gaussian, x, sig, solver_type="SDE")


def test_er_sde_samples_the_distribution():
    g = torch.Generator().manual_seed(0)
    sig = karras_sigmas(30, 0.03, 14.6)
    x_t = torch.randn(1, 4, 64, 64, generator=g) * math.sqrt(S2 + float(sig[0]) ** 2)
    out = SAMPLERS["er_sde"](gaussian, x_t, sig, noise_sampler=GeneratorNoiseSampler(g, x_t.shape))
    assert abs(float(out.std()) - math.sqrt(S2)) < 0.05 * math.sqrt(S2)
    assert float(torch.corrcoef(torch.stack([out.flatten(), x_t.flatten()]))[0, 1]) < 0.9


# -- SEEDS -----------------------------------------------------------------------------------------

def _seeds_reference(x, sig, noise, stages, eta=1.0, s_noise=1.0):
    """SEEDS (arXiv:2305.14267) as ComfyUI writes it, VE form (lambda = -log sigma, alpha = 1),
    with its phi functions ei_1(h) = e^h - 1, ei_2(h) = (e^h - 1 - h) / h. ``stages``: "2" (phi_1,
    r = 1/2), "2phi2" or "3"."""
    def ei1(v):
        return math.expm1(v)

    def ei2(v):
        return (math.expm1(v) - v) / v

    y = x
    for i in range(len(sig) - 1):
        s, t = float(sig[i]), float(sig[i + 1])
        den = gaussian(y, sig[i].reshape(1))
        if t == 0:
            y = den
            continue
        h = math.log(s) - math.log(t)
        he = h * (1 + eta)
        rs = [0.5] if stages != "3" else [1 / 3, 2 / 3]
        pts = [s * math.exp(-c * h) for c in rs]
        z = math.sqrt(-math.expm1(-2 * rs[0] * h * eta)) * noise(sig[i], torch.tensor(pts[0]))
        y1 = pts[0] / s * math.exp(-rs[0] * h * eta) * y - ei1(-rs[0] * he) * den + z * pts[0] * s_noise
        d1 = gaussian(y1, torch.tensor([pts[0]], dtype=y.dtype))
        last_c, last_sigma, d_last = rs[0], pts[0], d1
        if stages == "3":
            a2 = rs[1] / rs[0] * ei2(-rs[1] * he)
            a1 = ei1(-rs[1] * he) - a2
            seg = (rs[0] - rs[1]) * h * eta
            z = z * math.exp(seg) + math.sqrt(-math.expm1(2 * seg)) * noise(torch.tensor(pts[0]), torch.tensor(pts[1]))
            y2 = pts[1] / s * math.exp(-rs[1] * h * eta) * y - (a1 * den + a2 * d1) + z * pts[1] * s_noise
            d_last = gaussian(y2, torch.tensor([pts[1]], dtype=y.dtype))
            last_c, last_sigma = rs[1], pts[1]
        if stages == "2":
            comb = -ei1(-he) * torch.lerp(den, d_last, 1 / (2 * rs[0]))
        else:
            b = ei2(-he) / last_c
            comb = -((ei1(-he) - b) * den + b * d_last)
        seg = (last_c - 1) * h * eta
        z = z * math.exp(seg) + math.sqrt(-math.expm1(2 * seg)) * noise(torch.tensor(last_sigma), sig[i + 1])
        y = t / s * math.exp(-h * eta) * y + comb + z * t * s_noise
    return y


@pytest.mark.parametrize("name, stages, opts", [("seeds_2", "2", {}), ("seeds_2", "2phi2", {"solver_type": "phi_2"}),
                                                ("seeds_3", "3", {})])
def test_seeds_equal_the_published_algorithm_with_the_same_noise(name, stages, opts):
    x, sig = _start()
    got = SAMPLERS[name](gaussian, x, sig, noise_sampler=_noise(3, x.shape), **opts)
    ref = _seeds_reference(x, sig, _noise(3, x.shape), stages)
    assert torch.allclose(got, ref, atol=1e-9), float((got - ref).abs().max())
    assert torch.equal(SAMPLERS[name](gaussian, x, sig, extra_args={"seed": 5}, **opts),
                       SAMPLERS[name](gaussian, x, sig, extra_args={"seed": 5}, **opts))
    # eta 0: the deterministic exponential Runge-Kutta method
    ode = SAMPLERS[name](gaussian, x, sig, eta=0.0, **opts)
    assert torch.allclose(ode, _seeds_reference(x, sig, lambda a, b: 0.0, stages, eta=0.0), atol=1e-9)


@pytest.mark.parametrize("name, order", [("seeds_2", 1.8), ("seeds_3", 2.2)])
def test_seeds_deterministic_order(name, order):
    x_t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errs = []
    for n in (8, 16):
        sig = karras_sigmas(n, 0.03, 14.6).double()[:-1]
        out = SAMPLERS[name](gaussian, x_t * sig[0], sig, eta=0.0)
        exact = _exact_at(x_t * sig[0], float(sig[0]), float(sig[-1]))
        errs.append(float((out - exact).abs().max() / exact.abs().max()))
    assert math.log2(errs[0] / errs[1]) >= order, errs


@pytest.mark.parametrize("name", ["seeds_2", "seeds_3"])
def test_seeds_sample_the_distribution(name):
    g = torch.Generator().manual_seed(0)
    sig = karras_sigmas(20, 0.03, 14.6)
    x_t = torch.randn(1, 4, 64, 64, generator=g) * math.sqrt(S2 + float(sig[0]) ** 2)
    out = SAMPLERS[name](gaussian, x_t, sig, noise_sampler=GeneratorNoiseSampler(g, x_t.shape))
    assert abs(float(out.std()) - math.sqrt(S2)) < 0.05 * math.sqrt(S2)
    assert float(torch.corrcoef(torch.stack([out.flatten(), x_t.flatten()]))[0, 1]) < 0.5


# -- SA-Solver -------------------------------------------------------------------------------------

def _sa_weights(lams, lam_s, lam_t, tau):
    """The paper's b_j / alpha_t in closed form: the exponentially weighted moments
    M_p = int c e^(c (l - t)) l^p dl obey M_p = t^p - s^p e^(-c h) - (p / c) M_(p-1); the Lagrange
    integrals solve V^T b = M (V the Vandermonde matrix of the lambdas)."""
    c, h = 1 + tau**2, lam_t - lam_s
    moments = []
    for p in range(len(lams)):
        m = lam_t**p - lam_s**p * math.exp(-c * h)
        if p:
            m -= p / c * moments[-1]
        moments.append(m)
    return np.linalg.solve(np.vander(np.array(lams), len(lams), increasing=True).T, np.array(moments))


def _sa_reference(x, sig, noise, eta, interval, pece, p_order=3, c_order=4):
    lam = [-math.log(float(v)) if v > 0 else math.inf for v in sig]
    n = len(sig) - 1
    y_pred, tau, z, hist = x, 0.0, None, []
    evals = 0
    for i in range(n):
        den = gaussian(y_pred, sig[i].reshape(1))
        evals += 1
        hist = (hist + [den])[-4:]
        p = min(p_order, len(hist), n - 1 - i)
        c = 0 if i == 0 or (sig[i + 1] == 0 and not pece) else min(c_order, len(hist), n - i)
        if c == 0:
            y = y_pred
        else:
            b = _sa_weights(lam[i - c + 1: i + 1], lam[i - 1], lam[i], tau)
            y = float(sig[i] / sig[i - 1]) * math.exp(-(tau**2) * (lam[i] - lam[i - 1])) * y \
                + sum(float(bj) * d for bj, d in zip(b, hist[-c:], strict=True))
            if z is not None:
                y = y + z
            if pece:
                den = gaussian(y, sig[i].reshape(1))
                evals += 1
                hist[-1] = den
        if sig[i + 1] == 0:
            y_pred = den
            continue
        tau = eta if interval[0] >= float(sig[i + 1]) >= interval[1] else 0.0
        h = lam[i + 1] - lam[i]
        b = _sa_weights(lam[i - p + 1: i + 1], lam[i], lam[i + 1], tau)
        y_pred = float(sig[i + 1] / sig[i]) * math.exp(-(tau**2) * h) * y \
            + sum(float(bj) * d for bj, d in zip(b, hist[-p:], strict=True))
        z = None
        if tau > 0:
            z = noise(sig[i], sig[i + 1]) * float(sig[i + 1]) * math.sqrt(-math.expm1(-2 * tau**2 * h))
            y_pred = y_pred + z
    return y_pred, evals


def test_sa_solver_weights_equal_the_closed_form():
    from nodegen.diffusion.samplers.sa_solver import adams_coefficients

    lams = [-2.1, -1.3, -0.4, 0.2]
    for tau in (0.0, 1.0):
        for k in (1, 2, 3, 4):
            got = adams_coefficients(lams[-k:], 0.2, 0.9, tau)
            assert np.allclose(got, _sa_weights(lams[-k:], 0.2, 0.9, tau), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name, pece", [("sa_solver", False), ("sa_solver_pece", True)])
def test_sa_solver_equals_the_paper_algorithm_with_the_same_noise(name, pece):
    x, sig = _start(10)
    interval = (5.0, 0.3)
    calls = []

    def counted(y, s, **kw):
        calls.append(1)
        return gaussian(y, s)

    got = SAMPLERS[name](counted, x, sig, noise_sampler=_noise(3, x.shape), tau_interval=interval)
    ref, evals = _sa_reference(x, sig, _noise(3, x.shape), 1.0, interval, pece)
    assert torch.allclose(got, ref, atol=1e-9), float((got - ref).abs().max())
    assert len(calls) == evals and evals == (len(sig) - 1) * (2 if pece else 1) - 1 * pece
    assert torch.equal(SAMPLERS[name](gaussian, x, sig, extra_args={"seed": 5}),
                       SAMPLERS[name](gaussian, x, sig, extra_args={"seed": 5}))
    # tau off everywhere: deterministic, the same as eta 0
    assert torch.allclose(SAMPLERS[name](gaussian, x, sig, tau_interval=(100.0, 50.0), extra_args={"seed": 1}),
                          SAMPLERS[name](gaussian, x, sig, eta=0.0), atol=1e-12)


def test_sa_solver_deterministic_order_and_distribution():
    x_t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errs = []
    for n in (20, 40):
        sig = karras_sigmas(n, 0.03, 14.6).double()[:-1]
        out = SAMPLERS["sa_solver"](gaussian, x_t * sig[0], sig, eta=0.0)
        exact = _exact_at(x_t * sig[0], float(sig[0]), float(sig[-1]))
        errs.append(float((out - exact).abs().max() / exact.abs().max()))
    assert math.log2(errs[0] / errs[1]) >= 3.0, errs  # predictor 3 + corrector 4
    g = torch.Generator().manual_seed(0)
    sig = karras_sigmas(20, 0.03, 14.6)
    x = torch.randn(1, 4, 64, 64, generator=g) * math.sqrt(S2 + float(sig[0]) ** 2)
    out = SAMPLERS["sa_solver"](gaussian, x, sig, noise_sampler=GeneratorNoiseSampler(g, x.shape))
    assert abs(float(out.std()) - math.sqrt(S2)) < 0.05 * math.sqrt(S2)
    assert float(torch.corrcoef(torch.stack([out.flatten(), x.flatten()]))[0, 1]) < 0.9


@pytest.mark.parametrize("name", NEW[:4])
def test_final_step_lands_on_the_denoised(name):
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    sig = torch.tensor([2.0, 0.0], dtype=torch.float64)
    assert torch.allclose(SAMPLERS[name](gaussian, x, sig), gaussian(x, sig[:1]))


# -- through KSampler on the SD1 fixture ---------------------------------------------------------

@pytest.fixture(scope="module")
def sd1_parts(tmp_path_factory):
    from nodegen.models.objects import DiffusionModel, TextEncoder
    from tests.support.fixtures import fixture

    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    model = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    return model, te.encode("a cat"), te.encode("blurry")


def test_new_samplers_run_in_ksampler(sd1_parts):
    from nodegen.diffusion.sample import Steps, sample

    model, pos, neg = sd1_parts
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    outs = {}
    for name in NEW:
        a = sample(model, pos, neg, lat, 3, Steps(4), 5.0, name).latent["samples"]
        assert torch.isfinite(a).all(), name
        outs[name] = a
    assert torch.equal(outs["ipndm"], sample(model, pos, neg, lat, 3, Steps(4), 5.0, "ipndm").latent["samples"])
    assert not torch.allclose(outs["ipndm"], outs["heunpp2"], atol=1e-4)


def test_er_sde_flow_variant():
    from nodegen.diffusion.samplers import get_sampler
    from nodegen.diffusion.samplers.flow_variants import FLOW_VARIANTS

    smp = FLOW_VARIANTS["er_sde"](get_sampler("er_sde", s_noise=0.5))
    assert smp.options == {"s_noise": 0.5, "flow": True}
    sig = torch.linspace(1.0, 0.0, 9, dtype=torch.float64)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    # in ODE mode with one stage the step is the flow Euler step (alpha = 1 - sigma), from 1 - 1e-4
    got = SAMPLERS["er_sde"](gaussian, x, sig, flow=True, solver_type="ODE", max_stage=1)
    start = sig.clone()
    start[0] = 1 - 1e-4
    assert torch.allclose(got, SAMPLERS["euler"](gaussian, x, start), atol=1e-10)
    out = smp(gaussian, x, sig, extra_args={"seed": 1})
    assert torch.isfinite(out).all()
    for name in ("seeds_2", "seeds_3"):
        flow = FLOW_VARIANTS[name](get_sampler(name))
        assert flow.options == {"flow": True}
        out = flow(gaussian, x, sig, extra_args={"seed": 1})
        assert torch.isfinite(out).all() and not torch.allclose(out, SAMPLERS[name](gaussian, x, start,
                                                                                     extra_args={"seed": 1}))


def test_sa_solver_takes_its_noise_interval_from_the_model(sd1_parts):
    from nodegen.diffusion.denoiser import Denoiser
    from nodegen.diffusion.samplers.sa_solver import _tau_function

    model, pos, _ = sd1_parts
    with model.use(None, None) as unet:
        den = Denoiser(model, unet, pos, None, 1.0, latent_image=torch.zeros(1, 4, 8, 8))
        hi, lo = den.percent_to_sigma(0.2), den.percent_to_sigma(0.8)
        assert math.isclose(hi, float(den.ms.t_to_sigma(0.8 * 999)), rel_tol=1e-9) and hi > lo > 0
        tau = _tau_function(den, 0.7, None)
        assert tau(torch.tensor(hi * 1.01)) == 0.0 and tau(torch.tensor((hi * lo) ** 0.5)) == 0.7
        assert tau(torch.tensor(lo * 0.99)) == 0.0
