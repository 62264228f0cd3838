"""Euler with CFG++ (Chung et al. 2024; ComfyUI's ``euler_cfg_pp``): the step lands on the guided
prediction and keeps the unconditional noise direction, ``x' = denoised + sigma' * (x - uncond) / sigma``."""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import report, s_in_like, to_d
from nodegen.diffusion.samplers.cfg_pp import uncond_of


@torch.no_grad()
def sample_euler_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    extra_args = extra_args or {}
    uncond = uncond_of(model)
    s_in = s_in_like(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x, sigmas[i], uncond(denoised))
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised + d * sigmas[i + 1]
    return x
