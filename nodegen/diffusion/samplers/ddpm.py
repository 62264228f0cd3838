"""DDPM ancestral sampling (Ho et al. 2020) in sigma space, as ComfyUI's ``ddpm``: each step is
diffusers' ``DDPMScheduler`` step ("fixed_small" variance) between the two noise levels, taken on
the variance-preserving latent ``x / sqrt(1 + sigma^2)``."""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import ensure_noise_sampler, report, s_in_like


def ddpm_step(x_vp: torch.Tensor, sigma: torch.Tensor, sigma_prev: torch.Tensor, eps: torch.Tensor,
              noise_sampler) -> torch.Tensor:
    """One posterior step of the VP latent from ``sigma`` to ``sigma_prev`` given the noise ``eps``."""
    acp = 1 / (sigma * sigma + 1)
    acp_prev = 1 / (sigma_prev * sigma_prev + 1)
    alpha = acp / acp_prev
    mu = (1.0 / alpha).sqrt() * (x_vp - (1 - alpha) * eps / (1 - acp).sqrt())
    if sigma_prev > 0:
        mu = mu + ((1 - alpha) * (1.0 - acp_prev) / (1.0 - acp)).sqrt() * noise_sampler(sigma, sigma_prev)
    return mu


@torch.no_grad()
def sample_ddpm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    extra_args = extra_args or {}
    noise_sampler = ensure_noise_sampler(noise_sampler, x, extra_args)
    s_in = s_in_like(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        eps = (x - denoised) / sigmas[i]
        x = ddpm_step(x / torch.sqrt(1.0 + sigmas[i] ** 2), sigmas[i], sigmas[i + 1], eps, noise_sampler)
        if sigmas[i + 1] != 0:
            x = x * torch.sqrt(1.0 + sigmas[i + 1] ** 2)
    return x
