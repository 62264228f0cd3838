"""Linear multistep (order 4 by default) on the derivative dx/dsigma. The coefficients are the
integrals of the Lagrange basis polynomials over each step, computed exactly with Gauss-Legendre
quadrature (the basis has degree order-1 <= 3, so 3 nodes are exact; k-diffusion and diffusers use
scipy's adaptive quadrature for the same integral). Equals diffusers' ``LMSDiscreteScheduler``."""

from __future__ import annotations

import numpy as np
import torch

from nodegen.diffusion.samplers._common import report, s_in_like, to_d

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(4)


def linear_multistep_coeff(order: int, t: np.ndarray, i: int, j: int) -> float:
    """Integral over [t[i], t[i+1]] of the Lagrange basis polynomial of node ``t[i-j]`` built on
    the nodes ``t[i], t[i-1], ..., t[i-order+1]``."""
    if order - 1 > i:
        raise ValueError(f"order {order} too high for step {i}")

    def fn(tau: np.ndarray) -> np.ndarray:
        prod = np.ones_like(tau)
        for k in range(order):
            if j == k:
                continue
            prod = prod * (tau - t[i - k]) / (t[i - j] - t[i - k])
        return prod

    a, b = float(t[i]), float(t[i + 1])
    half = (b - a) / 2
    tau = half * _NODES + (a + b) / 2
    return float(half * np.sum(_WEIGHTS * fn(tau)))


@torch.no_grad()
def sample_lms(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None, order=4):
    extra_args = extra_args or {}
    s_in = s_in_like(x)
    sigmas_np = sigmas.detach().cpu().double().numpy()
    ds: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x, sigmas[i], denoised)
        ds.append(d)
        if len(ds) > order:
            ds.pop(0)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        cur_order = min(i + 1, order)
        coeffs = [linear_multistep_coeff(cur_order, sigmas_np, i, j) for j in range(cur_order)]
        x = x + sum(coeff * d for coeff, d in zip(coeffs, reversed(ds), strict=True))
    return x
