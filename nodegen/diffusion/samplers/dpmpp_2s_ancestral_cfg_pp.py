"""Ancestral DPM-Solver++(2S) with CFG++ (ComfyUI's ``dpmpp_2s_ancestral_cfg_pp``): both stages
start from ``x`` moved by ``denoised - uncond`` (the CFG++ renoising), then noise of ``sigma_up``."""

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
def sample_dpmpp_2s_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                     noise_sampler=None, eta=1.0, s_noise=1.0):
    extra_args = extra_args or {}
    noise_sampler = ensure_noise_sampler(noise_sampler, x, extra_args)
    uncond = uncond_of(model)
    s_in = s_in_like(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        u = uncond(denoised)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = denoised + to_d(x, sigmas[i], u) * sigma_down
        else:
            t, t_next = -sigmas[i].log(), -sigma_down.log()
            h = t_next - t
            s = t + h / 2
            shifted = x + (denoised - u)
            x_2 = (torch.exp(-s) / torch.exp(-t)) * shifted - torch.expm1(-h / 2) * denoised
            denoised_2 = model(x_2, torch.exp(-s) * s_in, **extra_args)
            x = (torch.exp(-t_next) / torch.exp(-t)) * shifted - torch.expm1(-h) * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x
