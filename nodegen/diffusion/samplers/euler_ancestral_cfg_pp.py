"""Euler ancestral with CFG++ (ComfyUI's ``euler_ancestral_cfg_pp``): the CFG++ Euler step down to
``sigma_down``, then fresh noise of ``sigma_up``."""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import (
    ensure_noise_sampler,
    get_ancestral_step,
    report,
    s_in_like,
    to_d,
)
from nodegen.diffusion.samplers.cfg_pp import uncond_of


@torch.no_grad()
def sample_euler_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                  noise_sampler=None, eta=1.0, s_noise=1.0):
    extra_args = extra_args or {}
    noise_sampler = ensure_noise_sampler(noise_sampler, x, extra_args)
    uncond = uncond_of(model)
    s_in = s_in_like(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        d = to_d(x, sigmas[i], uncond(denoised))
        x = denoised + d * sigma_down
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x
