"""Flux-style 2x2 latent patches (Flux.1 and Chroma transformers): packing a latent ``[B, C, h, w]``
into ``[B, h/2 * w/2, 4C]`` tokens, back, and the tokens' position ids (row, column), as diffusers'
FluxPipeline / ChromaPipeline ``_pack_latents`` / ``_unpack_latents`` / ``_prepare_latent_image_ids``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_patches(x: torch.Tensor) -> torch.Tensor:
    """``x`` with an odd height or width made even by repeating the last row or column (as
    ComfyUI's ``pad_to_patch_size``); the caller crops the result back."""
    ph, pw = x.shape[-2] % 2, x.shape[-1] % 2
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def pack(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, _, d = x.shape
    c = d // 4
    return x.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def image_ids(h: int, w: int, device, dtype) -> torch.Tensor:
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(h // 2)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device, dtype)
