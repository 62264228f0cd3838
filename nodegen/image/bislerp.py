"""Bislerp: resize a latent the way ComfyUI's ``bislerp`` upscale method does, bilinear but with
each channel vector interpolated by spherical linear interpolation (its direction slerped, its
length interpolated linearly), first along the width, then along the height.

Sample positions are those of torch's bilinear resize (``align_corners=False``). Two cases follow
ComfyUI's choices, for identical results: nearly parallel neighbours (cosine > 1 - 1e-5) give the
first neighbour unchanged, nearly opposite ones (cosine < -1 + 1e-5) give the linear blend. The
method is ComfyUI's (comfy/utils.py, GPL-3.0); this is an independent implementation of it.
"""

from __future__ import annotations

import torch

EPS = 1e-5


def _positions(old: int, new: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of ``new`` samples: the lower and upper source index and the weight of the upper."""
    src = ((torch.arange(new, dtype=torch.float64) + 0.5) * (old / new) - 0.5).clamp(min=0)
    lo = src.floor().long().clamp(max=old - 1)
    hi = (lo + 1).clamp(max=old - 1)
    return lo, hi, (src - lo).float()


def slerp_vectors(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Slerp rows of ``a`` [N, C] towards rows of ``b`` by ``t`` [N, 1] (see the module doc)."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua = torch.where(na == 0, torch.zeros_like(a), a / na)
    ub = torch.where(nb == 0, torch.zeros_like(b), b / nb)
    cos = (ua * ub).sum(-1, keepdim=True)
    omega = torch.acos(cos.clamp(-1, 1))
    sin = torch.sin(omega)
    out = (torch.sin((1 - t) * omega) / sin) * ua + (torch.sin(t * omega) / sin) * ub
    out = out * (na * (1 - t) + nb * t)
    out = torch.where(cos > 1 - EPS, a, out)
    return torch.where(cos < EPS - 1, a * (1 - t) + b * t, out)


def _along_last(x: torch.Tensor, new: int) -> torch.Tensor:
    """Resize the last dim of ``[B, C, H, W]`` to ``new``."""
    b, c, h, w = x.shape
    lo, hi, t = _positions(w, new)
    first = x[..., lo].permute(0, 2, 3, 1).reshape(-1, c)
    second = x[..., hi].permute(0, 2, 3, 1).reshape(-1, c)
    weights = t.view(1, 1, new, 1).expand(b, h, new, 1).reshape(-1, 1)
    return slerp_vectors(first, second, weights).view(b, h, new, c).permute(0, 3, 1, 2)


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``[B, C, h, w]`` -> ``[B, C, height, width]``."""
    x = samples.float()
    x = _along_last(x, width)
    x = _along_last(x.transpose(2, 3), height).transpose(2, 3)
    return x.contiguous().to(samples.dtype)
