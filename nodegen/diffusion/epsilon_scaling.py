"""Epsilon Scaling (Ning et al. 2023, "Elucidating the Exposure Bias in Diffusion Models",
arXiv:2308.15321), with the uniform schedule, as ComfyUI's "Epsilon Scaling" node applies it after
CFG: the guided noise prediction ``x - denoised`` is divided by ``scaling_factor``:

    denoised' = x - (x - denoised) / scaling_factor
"""

from __future__ import annotations

import torch


class EpsilonScaling:
    """A ``denoise_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`)."""

    def __init__(self, scaling_factor: float = 1.005) -> None:
        self.scaling_factor = float(scaling_factor) or 1e-9  # ComfyUI's guard against 0

    def __call__(self, den, x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
        return x - (x - denoised) / self.scaling_factor
