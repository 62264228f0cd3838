"""CFG-Zero* (Fan et al. 2025, "CFG-Zero*: Improved Classifier-Free Guidance for Flow Matching
Models", arXiv:2503.18886; https://github.com/WeichenFan/CFG-Zero-star), as ComfyUI's CFGZeroStar
node (comfy_extras/nodes_cfg.py) applies it after CFG.

Per batch item, ``alpha = <x - cond, x - uncond> / (|x - uncond|^2 + 1e-8)`` is the scale that
best fits the unconditional prediction to the conditional one, measured on ``x - denoised`` (the
noise / velocity up to the factor sigma); the unconditional denoised prediction is scaled by it
before CFG: ``alpha * uncond + cfg * (cond - alpha * uncond)``. ComfyUI writes it as a correction
of the CFG result, ``denoised + uncond * (alpha - 1) + cfg * uncond * (1 - alpha)``, which this
follows so that it also corrects what earlier hooks made of the CFG result.

ComfyUI scales the denoised prediction where the paper (and diffusers'
``ClassifierFreeZeroStarGuidance``) scale the model output; the two agree when ``x = 0`` and
otherwise differ by ``(1 - alpha) * (1 - cfg) * x``. ComfyUI's node has no zero-init steps.
Without an unconditional prediction (cfg 1) nothing changes (ComfyUI's is zeros there).
"""

from __future__ import annotations

import torch


def optimized_scale(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """``<positive, negative> / (|negative|^2 + 1e-8)`` per batch item, shaped to broadcast."""
    p, n = positive.reshape(positive.shape[0], -1), negative.reshape(negative.shape[0], -1)
    alpha = (p * n).sum(dim=1, keepdim=True) / ((n * n).sum(dim=1, keepdim=True) + 1e-8)
    return alpha.reshape([positive.shape[0]] + [1] * (positive.ndim - 1))


class CFGZeroStar:
    """A ``denoise_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`)."""

    def __call__(self, den, x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
        if not den.ran_uncond:
            return denoised
        cond, uncond, cfg = den.last_cond, den.last_uncond, float(den.cfg)
        alpha = optimized_scale(x - cond, x - uncond)
        return denoised + uncond * (alpha - 1.0) + cfg * uncond * (1.0 - alpha)
