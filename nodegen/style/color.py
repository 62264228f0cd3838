"""Colour transfer between images: Reinhard et al. (2001) mean/std matching in CIE Lab, and
per-channel histogram matching. IMAGE layout [B,H,W,C] in [0,1]; alpha is kept as it is."""

from __future__ import annotations

import torch

# sRGB (D65) <-> XYZ
_RGB2XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_EPS = 216 / 24389
_KAPPA = 24389 / 27


def _linear(rgb: torch.Tensor) -> torch.Tensor:
    return torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055).clamp_min(0) ** 2.4)


def _gamma(lin: torch.Tensor) -> torch.Tensor:
    return torch.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin.clamp_min(0) ** (1 / 2.4) - 0.055)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """[..., 3] sRGB in [0,1] -> [..., 3] Lab (L in 0..100), computed in float64."""
    x = _linear(rgb.double()) @ _RGB2XYZ.to(rgb.device).T / _WHITE.to(rgb.device)
    f = torch.where(x > _EPS, x.clamp_min(0) ** (1 / 3), (_KAPPA * x + 16) / 116)
    L = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return torch.stack([L, a, b], dim=-1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_lab` (float64 in, float64 out, not clamped)."""
    lab = lab.double()
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    f = torch.stack([fx, fy, fz], dim=-1)
    xyz = torch.where(f ** 3 > _EPS, f ** 3, (116 * f - 16) / _KAPPA) * _WHITE.to(lab.device)
    lin = xyz @ torch.linalg.inv(_RGB2XYZ).to(lab.device).T
    return _gamma(lin)


def _pair(image: torch.Tensor, reference: torch.Tensor):
    if image.dim() != 4 or reference.dim() != 4:
        raise ValueError("ColorTransfer expects IMAGE tensors [B,H,W,C]")
    if reference.shape[0] not in (1, image.shape[0]):
        raise ValueError(f"ColorTransfer: reference batch ({reference.shape[0]}) must be 1 or match "
                         f"the image batch ({image.shape[0]})")
    for b in range(image.shape[0]):
        yield b, reference[b if reference.shape[0] > 1 else 0]


def reinhard(image: torch.Tensor, reference: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Match the per-channel mean and standard deviation of ``image`` to ``reference`` in Lab."""
    out = image.clone().float()
    for b, ref in _pair(image, reference):
        src = rgb_to_lab(image[b, ..., :3])
        tgt = rgb_to_lab(ref[..., :3])
        mu_s, sd_s = src.mean((0, 1)), src.std((0, 1), unbiased=False)
        mu_t, sd_t = tgt.mean((0, 1)), tgt.std((0, 1), unbiased=False)
        moved = (src - mu_s) / sd_s.clamp_min(1e-6) * sd_t + mu_t
        lab = src + (moved - src) * strength
        out[b, ..., :3] = lab_to_rgb(lab).clamp(0, 1).float()
    return out


def match_histogram(values: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Map 1-D ``values`` so their distribution matches ``reference`` (quantile mapping; ties
    broken by position). With equally many values the sorted result equals sorted reference."""
    n = values.numel()
    ref_sorted = torch.sort(reference.flatten().double()).values
    order = torch.argsort(values.flatten(), stable=True)
    # quantile of each rank, mapped onto the reference's sorted values by linear interpolation
    q = torch.arange(n, dtype=torch.float64) / max(n - 1, 1) * (ref_sorted.numel() - 1)
    lo = q.floor().long().clamp(max=ref_sorted.numel() - 1)
    hi = (lo + 1).clamp(max=ref_sorted.numel() - 1)
    w = q - lo
    mapped = ref_sorted[lo] * (1 - w) + ref_sorted[hi] * w
    out = torch.empty(n, dtype=torch.float64)
    out[order] = mapped
    return out.view_as(values).to(values.dtype)


def histogram(image: torch.Tensor, reference: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Per-channel (R, G, B) histogram matching of ``image`` to ``reference``."""
    out = image.clone().float()
    for b, ref in _pair(image, reference):
        for c in range(3):
            src = image[b, ..., c].float().cpu()
            m = match_histogram(src, ref[..., c].float().cpu()).to(image.device)
            out[b, ..., c] = src.to(image.device) + (m - src.to(image.device)) * strength
    return out.clamp(0, 1)


def color_transfer(image: torch.Tensor, reference: torch.Tensor, method: str = "reinhard_lab",
                   strength: float = 1.0) -> torch.Tensor:
    if image.shape[-1] < 3 or reference.shape[-1] < 3:
        raise ValueError("ColorTransfer needs RGB images (3 or 4 channels)")
    if method == "reinhard_lab":
        return reinhard(image, reference, strength)
    if method == "histogram":
        return histogram(image, reference, strength)
    raise ValueError(f"ColorTransfer: method must be 'reinhard_lab' or 'histogram', got {method!r}")
