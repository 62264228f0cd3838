"""LCM sampling that enlarges the latent between steps, as ComfyUI's SamplerLCMUpscale
(comfy_extras/nodes_advanced_samplers.py ``sample_lcm_upscale``): each step jumps to the denoised
estimate, resizes it on the way to ``total_upscale`` times the size (evenly spaced factors over the
first ``upscale_steps`` steps; by default about half of them), then re-noises to the next sigma.

The re-noising draws from the seed's generator continuing after the starting noise (ComfyUI's
``torch.randn_like`` on the global generator that drew the starting noise), in the current size.
The LATENT that comes out is the enlarged one.
"""

from __future__ import annotations

import numpy as np
import torch

from nodegen.diffusion.samplers._common import report, s_in_like
from nodegen.image.latent_resize import resize


def upscale_factors(steps: int, total_upscale: float, upscale_steps: int | None) -> np.ndarray:
    """The factor after each of the first steps (ComfyUI's rule; ``steps`` = number of sigmas)."""
    if upscale_steps is None:
        count = max(steps // 2 + 1, 2)
    else:
        count = min(upscale_steps + 1, steps + 1)
    return np.linspace(1.0, total_upscale, count)[1:]


@torch.no_grad()
def sample_lcm_upscale(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                       total_upscale=2.0, upscale_method="bislerp", upscale_steps=None):
    extra_args = extra_args or {}
    factors = upscale_factors(len(sigmas), total_upscale, upscale_steps)
    generator = getattr(noise_sampler, "generator", None)
    if generator is None:
        generator = torch.Generator().manual_seed(int(extra_args.get("seed", 0) or 0))
    height, width = x.shape[-2:]
    s_in = s_in_like(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised
        if i < len(factors):
            x = resize(x, round(width * factors[i]), round(height * factors[i]), upscale_method)
        if sigmas[i + 1] > 0:
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x)
            x = x + sigmas[i + 1] * noise
    return x
