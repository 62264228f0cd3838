"""Rescaled classifier-free guidance (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample
Steps are Flawed", section 3.4; ComfyUI's RescaleCFG, diffusers' ``guidance_rescale``).

Guidance is done on the v-prediction of each branch (whatever the model predicts: v is an affine
function of the denoised estimate, ``v = (x / (sigma^2 + 1) - denoised) * sqrt(sigma^2 + 1) / sigma``
in nodegen's units), then the guided v is pulled towards the standard deviation of the
conditional v: ``v = m * v_cfg * std(v_cond) / std(v_cfg) + (1 - m) * v_cfg`` (std per batch item
over channels and pixels, unbiased, as torch.std), and turned back into a denoised estimate.
On a v-prediction model this is diffusers' ``rescale_noise_cfg`` on the model outputs.
"""

from __future__ import annotations

import torch


def rescaled_guidance(cond: torch.Tensor, uncond: torch.Tensor, cfg: float, x: torch.Tensor, sigma: float,
                      multiplier: float) -> torch.Tensor:
    """The guided denoised estimate from the two branches' denoised estimates ``cond`` and ``uncond``."""
    s2 = sigma * sigma + 1.0
    x_vp = x / s2
    to_v = s2**0.5 / sigma
    v_cond = (x_vp - cond) * to_v
    v_uncond = (x_vp - uncond) * to_v
    v_cfg = v_uncond + cfg * (v_cond - v_uncond)
    dims = tuple(range(1, cond.ndim))
    v_rescaled = v_cfg * (v_cond.std(dim=dims, keepdim=True) / v_cfg.std(dim=dims, keepdim=True))
    v = multiplier * v_rescaled + (1.0 - multiplier) * v_cfg
    return x_vp - v / to_v
