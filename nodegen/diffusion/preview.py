"""Cheap previews while sampling: a fixed linear projection of the latent's 4 channels to RGB
(ComfyUI's / Auto1111's approximation factors), no VAE call."""

from __future__ import annotations

from functools import cache

import torch

SD1_FACTORS = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
]
SD1_BIAS = [0.0, 0.0, 0.0]
SDXL_FACTORS = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
]
SDXL_BIAS = [0.1084, -0.0175, -0.0011]


@cache
def factors_for(family: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The (read-only, shared) projection matrix [4, 3] and bias [3] of ``family``."""
    if family in ("sdxl", "sdxl_refiner"):
        return torch.tensor(SDXL_FACTORS), torch.tensor(SDXL_BIAS)
    return torch.tensor(SD1_FACTORS), torch.tensor(SD1_BIAS)


def latent_preview(latent: torch.Tensor, family: str = "sd1", index: int = 0) -> torch.Tensor:
    """IMAGE ``[1, h, w, 3]`` in [0, 1] (latent resolution) of batch item ``index``."""
    f, b = factors_for(family)
    z = latent[index].detach().float().cpu()
    if z.shape[0] != f.shape[0]:
        z = z[: f.shape[0]]
    rgb = z.permute(1, 2, 0) @ f + b
    return ((rgb + 1.0) / 2.0).clamp(0, 1)[None]
