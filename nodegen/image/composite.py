"""Paste a source onto a destination through a mask (ComfyUI's ``composite``, shared by
ImageCompositeMasked and LatentCompositeMasked). Tensors are ``[B,C,H,W]``; ``x``/``y`` are in
the caller's units, divided by ``multiplier`` (8 for latents given in pixels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def repeat_to_batch(t: torch.Tensor, batch: int) -> torch.Tensor:
    if t.shape[0] == batch:
        return t
    reps = -(-batch // t.shape[0])
    return t.repeat(reps, *([1] * (t.ndim - 1)))[:batch]


def composite(destination: torch.Tensor, source: torch.Tensor, x: int, y: int,
              mask: torch.Tensor | None = None, multiplier: int = 1, resize_source: bool = False) -> torch.Tensor:
    """A copy of ``destination`` with ``source`` (its top-left at ``(x, y) // multiplier``)
    blended in by ``mask`` (1 = source; resized to the source, bilinear)."""
    out = destination.clone()
    source = source.to(out.device, out.dtype)
    if resize_source:
        source = F.interpolate(source, size=out.shape[-2:], mode="bilinear")
    source = repeat_to_batch(source, out.shape[0])
    left, top = max(0, x // multiplier), max(0, y // multiplier)
    h = min(source.shape[-2], out.shape[-2] - top)
    w = min(source.shape[-1], out.shape[-1] - left)
    if h <= 0 or w <= 0:
        return out
    if mask is None:
        m = torch.ones_like(source[:, :1])
    else:
        m = mask.to(out.device, torch.float32).reshape(-1, 1, mask.shape[-2], mask.shape[-1])
        m = F.interpolate(m, size=source.shape[-2:], mode="bilinear")
        m = repeat_to_batch(m, source.shape[0]).to(out.dtype)
    m = m[:, :, :h, :w]
    region = out[:, :, top:top + h, left:left + w]
    out[:, :, top:top + h, left:left + w] = m * source[:, :, :h, :w] + (1 - m) * region
    return out
