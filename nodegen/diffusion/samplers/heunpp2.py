"""Heun++ (``heunpp2``), from Carzit's sd-webui-samplers-scheduler (MIT), as ComfyUI runs it: a
Heun step whose slope blends the derivatives at the next one or two sigmas, weighted by those sigmas
relative to the first one.

Each step from ``sigma_i`` (after optional churn to ``sigma_hat``, as Karras' Heun):

* to the last sigma: Euler;
* to the sigma before the last: ``d' = (1 - w2) d + w2 d2`` with ``w2 = sigma_i+1 / (2 sigma_0)``,
  ``d2`` the slope after an Euler step to ``sigma_i+1``;
* otherwise: a second Euler step on to ``sigma_i+2`` gives ``d3``, and
  ``d' = (1 - w2 - w3) d + w2 d2 + w3 d3`` with ``w_k = sigma_i+k-1 / (3 sigma_0)``;

then ``x += d' (sigma_i+1 - sigma_hat)``.
"""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import churn, report, s_in_like, to_d


@torch.no_grad()
def sample_heunpp2(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                   s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0):
    extra_args = extra_args or {}
    s_in = s_in_like(x)
    n = len(sigmas) - 1
    s_end = sigmas[-1]
    for i in range(n):
        sigma = sigmas[i]
        x, sigma_hat = churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        report(callback, x, i, sigma, sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == s_end:
            x = x + d * dt
            continue
        x_2 = x + d * dt
        d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
        if sigmas[i + 2] == s_end:
            w2 = sigmas[i + 1] / (2 * sigmas[0])
            slope = (1 - w2) * d + w2 * d_2
        else:
            x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
            d_3 = to_d(x_3, sigmas[i + 2], model(x_3, sigmas[i + 2] * s_in, **extra_args))
            w2, w3 = sigmas[i + 1] / (3 * sigmas[0]), sigmas[i + 2] / (3 * sigmas[0])
            slope = (1 - w2 - w3) * d + w2 * d_2 + w3 * d_3
        x = x + slope * dt
    return x
