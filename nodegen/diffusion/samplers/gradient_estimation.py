"""Gradient estimation (Permenter & Yuan 2024, "Interpreting and Improving Diffusion Models from an
Optimization Perspective", Algorithm 2), ComfyUI's ``gradient_estimation``: Euler steps whose slope
extrapolates from the previous one, ``d' = ge_gamma * d + (1 - ge_gamma) * d_prev`` (plain Euler on
the first step; the step to sigma 0 lands on the denoised estimate).
"""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import report, s_in_like, to_d


@torch.no_grad()
def sample_gradient_estimation(model, x, sigmas, extra_args=None, callback=None, disable=None,
                               noise_sampler=None, ge_gamma=2.0):
    extra_args = extra_args or {}
    s_in = s_in_like(x)
    old_d = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            slope = d if old_d is None else ge_gamma * d + (1 - ge_gamma) * old_d
            x = x + slope * (sigmas[i + 1] - sigmas[i])
        old_d = d
    return x
