"""Temporal Score Rescaling (arXiv:2510.01184), as ComfyUI's TemporalScoreRescaling node applies it
after CFG (comfy_extras/nodes_eps.py): the predicted score is rescaled by

    r = (snr * s^2 + 1) / (snr * s^2 / k + 1),   snr = (alpha / sigma)^2

(``k`` the strength, ``s`` = ``tsr_sigma`` how early it acts; ``r = k`` where the snr is infinite),
which on the denoised prediction is ``lerp(x / alpha, denoised, r)``. ``alpha`` is 1 for eps / v
models and ``1 - sigma`` for flow models. No change at ``k = 1`` or ``sigma = 0``.
"""

from __future__ import annotations

import math

import torch


class TemporalScoreRescaling:
    """A ``denoise_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`)."""

    def __init__(self, k: float = 0.95, sigma: float = 1.0) -> None:
        self.k = float(k)
        self.variance = float(sigma) ** 2

    def __call__(self, den, x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
        if self.k == 1 or sigma == 0:
            return denoised
        flow = getattr(den.model, "prediction_type", "") == "flow"
        alpha = 1.0 - sigma if flow else 1.0
        if alpha <= 0:  # snr 0: r = 1
            return denoised
        snr = (alpha / sigma) ** 2
        r = self.k if math.isinf(snr) else (snr * self.variance + 1) / (snr * self.variance / self.k + 1)
        return torch.lerp(x / alpha, denoised, r)
