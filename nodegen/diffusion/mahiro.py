"""Mahiro guidance, as ComfyUI's experimental "Mahiro" node computes it after CFG
(comfy_extras/nodes_mahiro.py): the result leans towards the positive prediction scaled by cfg
(``leap = cfg * cond``) as the signed-square-root CFG result and unconditional leap look alike:

    merge = (leap + guided) / 2
    sim = mean cosine similarity over channels of ssqrt(cfg * uncond) and ssqrt(merge)
    result = ((2 sim + 2) * guided + (2 - 2 sim) * leap) / 4        (ssqrt(v) = sign(v) sqrt(|v|))

Where the step skipped the negative (cfg 1), ``uncond`` is zeros, as ComfyUI's batch leaves it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _ssqrt(v: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(v.abs()) * v.sign()


class Mahiro:
    """A ``denoise_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`)."""

    def __call__(self, den, x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
        cond = den.last_cond
        uncond = den.last_uncond if den.ran_uncond else torch.zeros_like(cond)
        leap = cond * den.cfg
        merge = (leap + denoised) / 2
        sim = F.cosine_similarity(_ssqrt(uncond * den.cfg), _ssqrt(merge)).mean()
        weight = 2 * (sim + 1)
        return (weight * denoised + (4 - weight) * leap) / 4
