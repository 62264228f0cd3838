"""Cheap previews while sampling: a fixed linear projection of the denoised latent (in the model's
space) to RGB, ComfyUI's ``latent_rgb_factors`` and biases (Auto1111's for SD1), no VAE call: 4
channels for SD1 / SD2 / SDXL, 16 for SD3 and for Flux / Chroma (each has its own factors)."""

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
SD3_FACTORS = [
    [-0.0922, -0.0175, 0.0749], [0.0311, 0.0633, 0.0954], [0.1994, 0.0927, 0.0458], [0.0856, 0.0339, 0.0902],
    [0.0587, 0.0272, -0.0496], [-0.0006, 0.1104, 0.0309], [0.0978, 0.0306, 0.0427], [-0.0042, 0.1038, 0.1358],
    [-0.0194, 0.0020, 0.0669], [-0.0488, 0.0130, -0.0268], [0.0922, 0.0988, 0.0951], [-0.0278, 0.0524, -0.0542],
    [0.0332, 0.0456, 0.0895], [-0.0069, -0.0030, -0.0810], [-0.0596, -0.0465, -0.0293], [-0.1448, -0.1463, -0.1189],
]
SD3_BIAS = [0.2394, 0.2135, 0.1925]
FLUX_FACTORS = [
    [-0.0346, 0.0244, 0.0681], [0.0034, 0.0210, 0.0687], [0.0275, -0.0668, -0.0433], [-0.0174, 0.0160, 0.0617],
    [0.0859, 0.0721, 0.0329], [0.0004, 0.0383, 0.0115], [0.0405, 0.0861, 0.0915], [-0.0236, -0.0185, -0.0259],
    [-0.0245, 0.0250, 0.1180], [0.1008, 0.0755, -0.0421], [-0.0515, 0.0201, 0.0011], [0.0428, -0.0012, -0.0036],
    [0.0817, 0.0765, 0.0749], [-0.1264, -0.0522, -0.1103], [-0.0280, -0.0881, -0.0499], [-0.1262, -0.0982, -0.0778],
]
FLUX_BIAS = [-0.0329, -0.0718, -0.0851]


@cache
def factors_for(family: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The (read-only, shared) projection matrix [4, 3] and bias [3] of ``family``."""
    if family in ("sdxl", "sdxl_refiner"):
        return torch.tensor(SDXL_FACTORS), torch.tensor(SDXL_BIAS)
    if family == "sd3":
        return torch.tensor(SD3_FACTORS), torch.tensor(SD3_BIAS)
    if family in ("flux", "chroma"):  # Chroma's latents are Flux's
        return torch.tensor(FLUX_FACTORS), torch.tensor(FLUX_BIAS)
    return torch.tensor(SD1_FACTORS), torch.tensor(SD1_BIAS)


def latent_preview(latent: torch.Tensor, family: str = "sd1", index: int = 0) -> torch.Tensor:
    """IMAGE ``[1, h, w, 3]`` in [0, 1] (latent resolution) of batch item ``index``."""
    f, b = factors_for(family)
    z = latent[index].detach().float().cpu()
    if z.shape[0] != f.shape[0]:
        z = z[: f.shape[0]]
    rgb = z.permute(1, 2, 0) @ f + b
    return ((rgb + 1.0) / 2.0).clamp(0, 1)[None]
