"""Euler (Karras et al. 2022, Algorithm 2 with optional churn). With the defaults this is exactly
diffusers' ``EulerDiscreteScheduler`` step and, on the same sigmas, DDIM with eta = 0."""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import churn, report, s_in_like, to_d


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
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
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x
