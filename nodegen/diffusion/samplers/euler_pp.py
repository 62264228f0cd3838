"""ComfyUI's "alternative" Euler CFG++ (comfy_extras/nodes_advanced_samplers.py ``sample_euler_pp``,
SamplerEulerCFGpp's ``version: alternative``): an Euler step along

    d = (x - 2 * denoised + uncond) / sigma

where ``denoised`` is the guided and ``uncond`` the unconditional prediction (the negative is run
even at cfg 1). Not one of KSampler's named samplers; the node builds it.
"""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import report, s_in_like, to_d
from nodegen.diffusion.samplers.cfg_pp import uncond_of


@torch.no_grad()
def sample_euler_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    extra_args = extra_args or {}
    uncond = uncond_of(model)
    s_in = s_in_like(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x - denoised + uncond(denoised), sigmas[i], denoised)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x
