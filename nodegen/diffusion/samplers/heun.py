"""Heun's second-order method (Karras et al. 2022, Algorithm 2); the last step to sigma 0 is an
Euler step. Equals diffusers' ``HeunDiscreteScheduler``."""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import churn, report, s_in_like, to_d


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0):
    extra_args = extra_args or {}
    s_in = s_in_like(x)
    n = len(sigmas) - 1
    for i in range(n):
        sigma = sigmas[i]
        x, sigma_hat = churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        report(callback, x, i, sigma, sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in, **extra_args)
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            x = x + (d + d_2) / 2 * dt
    return x
