"""DEIS (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator"), the
tAB variant as ComfyUI's ``deis`` runs it (after zju-pi/diff-sampler's reimplementation, Apache 2):
an Adams-Bashforth multistep method on ``dx/dsigma = eps`` whose history of ``eps`` is
interpolated by a Lagrange polynomial in VP time ``tau`` and integrated over the step in sigma.

The weights: ``c_j = integral from sigma_i to sigma_i+1 of L_j(tau(sigma)) dsigma``, with ``L_j`` the
Lagrange basis on the ``tau`` of the current and previous sigmas, ``tau(sigma)`` the VP-SDE time of
EDM's reference schedule (sigma 0.002..80, epsilon 1e-3). Here the integral is taken in ``tau``
by Gauss-Legendre quadrature (``dsigma = sigma'(tau) dtau``); the reference sums 10,000 points,
which agrees to about 1e-4. Order is ``min(max_order, step + 1)``; the step to sigma 0 is Euler.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nodegen.diffusion.samplers._common import report, s_in_like

#: EDM's reference VP-SDE used to define tau (as the reference implementation).
_EPS_S, _SIGMA_MIN, _SIGMA_MAX = 1e-3, 0.002, 80.0


def _vp_constants() -> tuple[float, float]:
    beta_d = 2 * (math.log(_SIGMA_MIN**2 + 1) / _EPS_S - math.log(_SIGMA_MAX**2 + 1)) / (_EPS_S - 1)
    beta_min = math.log(_SIGMA_MAX**2 + 1) - 0.5 * beta_d
    return beta_d, beta_min


def sigma_to_tau(sigma: np.ndarray) -> np.ndarray:
    beta_d, beta_min = _vp_constants()
    return (np.sqrt(beta_min**2 + 2 * beta_d * np.log(sigma**2 + 1)) - beta_min) / beta_d


def _dsigma_dtau(tau: np.ndarray) -> np.ndarray:
    beta_d, beta_min = _vp_constants()
    e = np.exp(0.5 * beta_d * tau**2 + beta_min * tau)
    return 0.5 * e * (beta_d * tau + beta_min) / np.sqrt(e - 1)


def deis_coefficients(sigmas: torch.Tensor, max_order: int = 3, points: int = 64) -> list[list[float]]:
    """Per step, the weights of ``eps`` at the current and previous sigmas (empty for order 1)."""
    taus = sigma_to_tau(np.asarray(sigmas, dtype=np.float64))
    nodes, weights = np.polynomial.legendre.leggauss(points)
    out: list[list[float]] = []
    for i in range(len(taus) - 1):
        order = min(i + 1, max_order)
        if order == 1 or taus[i + 1] <= 0:  # the step to sigma 0 is Euler
            out.append([])
            continue
        a, b = taus[i], taus[i + 1]
        tau = 0.5 * (b - a) * nodes + 0.5 * (a + b)
        w = 0.5 * (b - a) * weights * _dsigma_dtau(tau)
        prev = [taus[i - k] for k in range(order)]
        coeffs = []
        for j in range(order):
            basis = np.ones_like(tau)
            for k in range(order):
                if k != j:
                    basis *= (tau - prev[k]) / (prev[j] - prev[k])
            coeffs.append(float(np.sum(w * basis)))
        out.append(coeffs)
    return out


@torch.no_grad()
def sample_deis(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                max_order=3):
    if not 1 <= max_order <= 4:
        raise ValueError(f"deis: max_order must be 1 to 4, got {max_order}")
    extra_args = extra_args or {}
    s_in = s_in_like(x)
    coeffs = deis_coefficients(sigmas.detach().cpu().double().clamp(min=0), max_order)
    history: list[torch.Tensor] = []  # eps of the previous steps, newest last
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        eps = (x - denoised) / sigmas[i]
        order = min(max_order, i + 1)
        if sigmas[i + 1] <= 0 or order == 1:
            x = x + (sigmas[i + 1] - sigmas[i]) * eps
        else:
            c = coeffs[i]
            step = c[0] * eps
            for k in range(1, order):
                step = step + c[k] * history[-k]
            x = x + step
        history.append(eps)
        del history[: max(0, len(history) - (max_order - 1))]
    return x
