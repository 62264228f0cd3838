"""LCM (latent consistency) multistep sampling: jump to the model's denoised estimate, then
re-noise to the next sigma with fresh noise."""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import ensure_noise_sampler, report, s_in_like


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    extra_args = extra_args or {}
    noise_sampler = ensure_noise_sampler(noise_sampler, x, extra_args)
    s_in = s_in_like(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
    return x
