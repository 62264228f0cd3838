"""UniPC (Zhao et al. 2023): multistep predictor (UniP) + corrector (UniC), data prediction,
variants ``bh1`` / ``bh2``, written in k-diffusion's sigma space (``lambda = -log sigma``).

Order: like diffusers' ``UniPCMultistepScheduler(predict_x0=True, lower_order_final=True)``, the
order warms up (1, 2, ... up to ``order``) and drops near the end (never above the number of steps
left); the last step to sigma 0 returns the model's denoised estimate. ``uni_pc`` is bh1 order 3,
``uni_pc_bh2`` is bh2 order 3 (ComfyUI's names).
"""

from __future__ import annotations

import math

import torch

from nodegen.diffusion.samplers._common import report, s_in_like


def _coefficients(rks: list[float], h: float, order: int, variant: str):
    hh = -h
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    factorial_i = 1
    if variant == "bh1":
        b_h = hh
    elif variant == "bh2":
        b_h = math.expm1(hh)
    else:
        raise ValueError(f"unknown UniPC variant {variant!r}; use 'bh1' or 'bh2'")
    rk = torch.tensor(rks, dtype=torch.float64)
    rows, b = [], []
    for i in range(1, order + 1):
        rows.append(rk ** (i - 1))
        b.append(h_phi_k * factorial_i / b_h)
        factorial_i *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial_i
    return torch.stack(rows), torch.tensor(b, dtype=torch.float64), h_phi_1, b_h


def _differences(outputs, lambdas, lam_s0, h, order):
    """rk and D1 = (m_k - m0) / rk for the ``order - 1`` previous outputs."""
    m0 = outputs[-1]
    rks, d1s = [], []
    for k in range(1, order):
        rk = (lambdas[-(k + 1)] - lam_s0) / h
        rks.append(rk)
        d1s.append((outputs[-(k + 1)] - m0) / rk)
    rks.append(1.0)
    return rks, d1s


def _predict(outputs, lambdas, x, sigma, sigma_next, order, variant):
    m0 = outputs[-1]
    lam_s0, lam_t = lambdas[-1], -math.log(sigma_next)
    h = lam_t - lam_s0
    rks, d1s = _differences(outputs, lambdas, lam_s0, h, order)
    r, b, h_phi_1, b_h = _coefficients(rks, h, order, variant)
    x_t = (sigma_next / sigma) * x - h_phi_1 * m0
    if d1s:
        rhos = [0.5] if order == 2 else torch.linalg.solve(r[:-1, :-1], b[:-1]).tolist()
        x_t = x_t - b_h * sum(float(rho) * d for rho, d in zip(rhos, d1s, strict=True))
    return x_t


def _correct(outputs, lambdas, model_t, last_sample, sigma_prev, sigma, order, variant):
    m0 = outputs[-1]
    lam_s0, lam_t = lambdas[-1], -math.log(sigma)
    h = lam_t - lam_s0
    rks, d1s = _differences(outputs, lambdas, lam_s0, h, order)
    r, b, h_phi_1, b_h = _coefficients(rks, h, order, variant)
    rhos = [0.5] if order == 1 else torch.linalg.solve(r, b).tolist()
    res = sum(float(rho) * d for rho, d in zip(rhos[:-1], d1s, strict=True)) if d1s else 0
    x_t = (sigma / sigma_prev) * last_sample - h_phi_1 * m0
    return x_t - b_h * (res + rhos[-1] * (model_t - m0))


@torch.no_grad()
def sample_uni_pc(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                  order=3, variant="bh1", lower_order_final=True, use_corrector=True):
    extra_args = extra_args or {}
    s_in = s_in_like(x)
    n = len(sigmas) - 1
    sig = [float(s) for s in sigmas]
    outputs: list[torch.Tensor] = []
    lambdas: list[float] = []
    last_sample = None
    last_order = 1
    warm = 0
    for i in range(n):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if use_corrector and last_sample is not None:
            x = _correct(outputs, lambdas, denoised, last_sample, sig[i - 1], sig[i], last_order, variant)
        outputs.append(denoised)
        lambdas.append(-math.log(sig[i]))
        del outputs[:-order], lambdas[:-order]
        this_order = min(order, n - i) if lower_order_final else order
        this_order = min(this_order, warm + 1)
        last_sample, last_order = x, this_order
        if sig[i + 1] == 0:
            x = denoised
        else:
            x = _predict(outputs, lambdas, x, sig[i], sig[i + 1], this_order, variant)
        warm = min(warm + 1, order)
    return x


@torch.no_grad()
def sample_uni_pc_bh2(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                      order=3, lower_order_final=True, use_corrector=True):
    return sample_uni_pc(model, x, sigmas, extra_args, callback, disable, noise_sampler, order=order,
                         variant="bh2", lower_order_final=lower_order_final, use_corrector=use_corrector)
