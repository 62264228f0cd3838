"""The training noise schedule of the SD families."""

from __future__ import annotations

import torch


def scaled_linear_alphas_cumprod(beta_start: float = 0.00085, beta_end: float = 0.012,
                                 steps: int = 1000) -> torch.Tensor:
    """``alphas_cumprod`` of SD's "scaled_linear" schedule as a float64 CPU tensor.

    Computed exactly as diffusers' schedulers do (in float32) and then widened to float64, so
    samplers that match diffusers can reproduce its values bit for bit.
    """
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float64)
