"""Adaptive instance normalisation (Huang & Belongie 2017) on latents: give each channel of the
content latent the mean and standard deviation of the style latent's channel."""

from __future__ import annotations

import torch


def adain(content: torch.Tensor, style: torch.Tensor, strength: float = 1.0,
          eps: float = 1e-6) -> torch.Tensor:
    """``content`` [B,C,h,w], ``style`` [1 or B, C, h', w'] -> [B,C,h,w].

    Statistics are per sample and per channel over the spatial axes (population std)."""
    if content.dim() != 4 or style.dim() != 4:
        raise ValueError(f"LatentStyleAdaIN expects latents [B,C,h,w], got {tuple(content.shape)} "
                         f"and {tuple(style.shape)}")
    if content.shape[1] != style.shape[1]:
        raise ValueError(f"LatentStyleAdaIN: content has {content.shape[1]} channels but style has "
                         f"{style.shape[1]} (latents from different model families?)")
    if style.shape[0] not in (1, content.shape[0]):
        raise ValueError(f"LatentStyleAdaIN: style batch ({style.shape[0]}) must be 1 or match the "
                         f"content batch ({content.shape[0]})")
    c = content.float()
    s = style.float().to(c.device)
    mu_c = c.mean((2, 3), keepdim=True)
    sd_c = c.std((2, 3), keepdim=True, unbiased=False)
    mu_s = s.mean((2, 3), keepdim=True)
    sd_s = s.std((2, 3), keepdim=True, unbiased=False)
    moved = (c - mu_c) / (sd_c + eps) * sd_s + mu_s
    return (c + (moved - c) * strength).to(content.dtype)


def adain_latent(content: dict, style: dict, strength: float = 1.0) -> dict:
    """LATENT dicts: the content's other keys (noise_mask ...) are kept."""
    out = dict(content)
    out["samples"] = adain(content["samples"], style["samples"], strength)
    return out
