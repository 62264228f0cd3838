"""SA-Solver (Xue et al. 2023, "SA-Solver: Stochastic Adams Solver for Fast Sampling of Diffusion
Models", NeurIPS 2023), ComfyUI's ``sa_solver`` and ``sa_solver_pece``: a stochastic Adams
predictor (order 3) and corrector (order 4) on the data prediction in the half log-SNR ``lambda``,
with the noise strength ``tau`` on for the middle of the schedule.

A step from ``lambda_s`` to ``lambda_t`` (``h = lambda_t - lambda_s``, ``c = 1 + tau^2``) is

    x_t = (sigma_t / sigma_s) e^(-tau^2 h) x_s + sum_j b_j D_j + sigma_t sqrt(1 - e^(-2 tau^2 h)) z,

    b_j = alpha_t c * integral_{lambda_s}^{lambda_t} e^(-c (lambda_t - l)) L_j(l) dl,

``L_j`` the Lagrange basis on the lambdas of the denoised estimates ``D_j`` used (eqs. 15 and 18 of
the paper; here the integrals by Gauss-Legendre quadrature, exact to rounding for these smooth
integrands). The predictor uses the last ``predictor_order`` estimates to reach ``x_pred`` at the
next sigma; there the model is evaluated and the corrector redoes the same step with the last
``corrector_order`` estimates including that new one (and the predictor's noise). PECE mode
evaluates the corrected state again (one more model call per step); otherwise the corrected
estimate is reused. Orders drop near the end when the schedule ends at 0, whose step lands on the
denoised estimate. ``simple_order_2`` uses the paper's simplified second-order weights (its
Appendix D).

``tau`` is ``eta`` while the next sigma lies between the sigmas at 20 % and 80 % of the model's
timestep range (ComfyUI's default interval; through KSampler nodegen's Denoiser gives those), 0
elsewhere; a plain callable model without that mapping gets ``eta`` on every step unless
``tau_interval=(start_sigma, end_sigma)`` is given.
"""

from __future__ import annotations

import numpy as np
import torch

from nodegen.diffusion.samplers._common import (
    ensure_noise_sampler,
    half_log_snr_fns,
    offset_first_sigma,
    report,
    s_in_like,
)

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)


def adams_coefficients(lambdas: list[float], lambda_s: float, lambda_t: float, tau: float) -> list[float]:
    """``b_j / alpha_t`` for the estimates at ``lambdas`` (oldest first), step ``lambda_s -> lambda_t``."""
    c = 1 + tau**2
    half = 0.5 * (lambda_t - lambda_s)
    pos = half * _NODES + 0.5 * (lambda_s + lambda_t)
    weight = half * _WEIGHTS * c * np.exp(-c * (lambda_t - pos))
    out = []
    for j, lam_j in enumerate(lambdas):
        basis = np.ones_like(pos)
        for k, lam_k in enumerate(lambdas):
            if k != j:
                basis *= (pos - lam_k) / (lam_j - lam_k)
        out.append(float(np.sum(weight * basis)))
    return out


def simple_order_2_coefficients(lambdas: list[float], lambda_s: float, lambda_t: float, tau: float,
                                corrector: bool) -> list[float]:
    """The paper's simplified second-order weights (oldest first), as ``b_j / alpha_t``."""
    c = 1 + tau**2
    h = lambda_t - lambda_s
    total = -np.expm1(-c * h)
    if corrector:
        newest = 0.5 * c * h
        return [total - newest, newest]
    older = 0.5 * c * h**2 / (lambdas[-2] - lambda_s)
    return [older, total - older]


def _tau_function(model, eta: float, tau_interval):
    if eta <= 0:
        return lambda sigma: 0.0
    if tau_interval is None and hasattr(model, "percent_to_sigma"):
        tau_interval = (model.percent_to_sigma(0.2), model.percent_to_sigma(0.8))
    if tau_interval is None:
        return lambda sigma: eta
    start, end = (float(v) for v in tau_interval)
    return lambda sigma: eta if start >= float(sigma) >= end else 0.0


def _combine(estimates: list[torch.Tensor], weights: list[float], alpha_t) -> torch.Tensor:
    out = weights[0] * estimates[0]
    for w, d in zip(weights[1:], estimates[1:], strict=True):
        out = out + w * d
    return alpha_t * out


@torch.no_grad()
def sample_sa_solver(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                     eta=1.0, s_noise=1.0, predictor_order=3, corrector_order=4, use_pece=False,
                     simple_order_2=False, tau_interval=None, flow=False):
    if not (1 <= predictor_order <= 6 and 0 <= corrector_order <= 6):
        raise ValueError(f"sa_solver: predictor_order must be 1 to 6 and corrector_order 0 to 6, got "
                         f"{predictor_order} and {corrector_order}")
    if len(sigmas) <= 1:
        return x
    extra_args = extra_args or {}
    tau_of = _tau_function(model, eta, tau_interval)
    if eta > 0 and s_noise > 0:
        noise_sampler = ensure_noise_sampler(noise_sampler, x, extra_args)
    s_in = s_in_like(x)
    sigmas = offset_first_sigma(sigmas, flow)
    lam_of, _ = half_log_snr_fns(flow)
    positive = sigmas.clamp_min(torch.finfo(sigmas.dtype).tiny)
    lambdas = [float(v) for v in lam_of(positive.double())]
    n = len(sigmas) - 1
    to_zero = bool(sigmas[-1] == 0)
    most = max(predictor_order, corrector_order)

    def weights(used: list[float], lam_s: float, lam_t: float, tau: float, corrector: bool) -> list[float]:
        if simple_order_2 and len(used) == 2:
            return simple_order_2_coefficients(used, lam_s, lam_t, tau, corrector)
        return adams_coefficients(used, lam_s, lam_t, tau)

    x_pred, tau, noise = x, 0.0, None
    estimates: list[torch.Tensor] = []
    for i in range(n):
        denoised = model(x_pred, sigmas[i] * s_in, **extra_args)
        report(callback, x_pred, i, sigmas[i], sigmas[i], denoised)
        estimates = (estimates + [denoised])[-most:]
        p_used = min(predictor_order, len(estimates))
        c_used = 0 if i == 0 or (sigmas[i + 1] == 0 and not use_pece) else min(corrector_order, len(estimates))
        if to_zero:
            p_used = min(p_used, n - 1 - i)
            c_used = min(c_used, n - i)
        # corrector: redo the last step with the new estimate
        if c_used == 0:
            x = x_pred
        else:
            lam_prev, lam_now = lambdas[i - 1], lambdas[i]
            b = weights(lambdas[i - c_used + 1: i + 1], lam_prev, lam_now, tau, True)
            alpha = sigmas[i] * np.exp(lam_now)
            x = (sigmas[i] / sigmas[i - 1] * np.exp(-(tau**2) * (lam_now - lam_prev)) * x
                 + _combine(estimates[-c_used:], b, alpha))
            if noise is not None:
                x = x + noise
            if use_pece:
                denoised = model(x, sigmas[i] * s_in, **extra_args)
                estimates[-1] = denoised
        # predictor
        if sigmas[i + 1] == 0:
            x_pred = denoised
            continue
        tau = tau_of(sigmas[i + 1])
        lam_now, lam_next = lambdas[i], lambdas[i + 1]
        h = lam_next - lam_now
        b = weights(lambdas[i - p_used + 1: i + 1], lam_now, lam_next, tau, False)
        alpha = sigmas[i + 1] * np.exp(lam_next)
        x_pred = sigmas[i + 1] / sigmas[i] * np.exp(-(tau**2) * h) * x + _combine(estimates[-p_used:], b, alpha)
        noise = None
        if tau > 0 and s_noise > 0:
            level = float(np.sqrt(-np.expm1(-2 * tau**2 * h)))
            noise = noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * level * s_noise
            x_pred = x_pred + noise
    return x_pred


@torch.no_grad()
def sample_sa_solver_pece(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                          **options):
    return sample_sa_solver(model, x, sigmas, extra_args, callback, disable, noise_sampler, use_pece=True,
                            **options)
