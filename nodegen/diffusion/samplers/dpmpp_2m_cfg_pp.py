"""DPM-Solver++(2M) with CFG++ (ComfyUI's ``dpmpp_2m_cfg_pp``): the multistep update in
log-sigma, renoised along the unconditional prediction; the second-order correction uses the
guided prediction against the previous unconditional one."""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import report, s_in_like
from nodegen.diffusion.samplers.cfg_pp import uncond_of


@torch.no_grad()
def sample_dpmpp_2m_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    extra_args = extra_args or {}
    uncond = uncond_of(model)
    s_in = s_in_like(x)
    old_uncond = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        u = uncond(denoised)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, t_next = -sigmas[i].log(), -sigmas[i + 1].log()
            h = t_next - t
            mix = -torch.exp(-h) * u
            if old_uncond is not None:
                r = (t + sigmas[i - 1].log()) / h  # h_last / h
                mix = mix - torch.expm1(-h) * (1 / (2 * r)) * (denoised - old_uncond)
            x = denoised + mix + torch.exp(-h) * x
        old_uncond = u
    return x
