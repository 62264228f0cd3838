"""Classifier-free guidance and the weighted combination of several conditionings.

Each conditioning list gives one prediction: the CondItems' predictions averaged with weights
``strength`` (default 1) times their mask (``extras["mask"]`` times ``mask_strength``, resized to the
latent) times their area mask (1 inside ``extras["area"]``, with a linear
feather of ``feather`` latent pixels at borders inside the image, as ComfyUI does).
Guidance: ``uncond + cfg * (cond - uncond)`` on the denoised prediction (the same as on eps or v:
the conversion to denoised is affine with the same offset for both). ``cfg == 1`` skips the
negative prediction entirely.
"""

from __future__ import annotations

import torch


def area_of(item, h: int, w: int) -> tuple[int, int, int, int]:
    """``(height, width, y, x)`` in latent pixels; the full latent when the item has no area.

    ``extras["area"]`` is ``(height, width, y, x)`` in image pixels (multiples of 8);
    ``extras["area_fraction"]`` the same as fractions of the image (ComfyUI's "percentage" areas,
    rounded to latent pixels as ComfyUI rounds them). With ``extras["set_area_to_bounds"]`` the
    area is the bounding box of the item's mask (resized to the latent), at least 8 latent pixels
    a side, as ComfyUI's ConditioningSetMask "mask bounds"."""
    if item.extras.get("set_area_to_bounds") and item.extras.get("mask") is not None:
        return mask_bounds(item.extras["mask"], h, w)
    fraction = item.extras.get("area_fraction")
    if fraction is not None:
        fh, fw, fy, fx = (float(v) for v in fraction)
        ah, aw, ay, ax = max(1, round(fh * h)), max(1, round(fw * w)), round(fy * h), round(fx * w)
        ay, ax = min(ay, h - 1), min(ax, w - 1)
        return (max(1, min(ah, h - ay)), max(1, min(aw, w - ax)), ay, ax)
    area = item.extras.get("area")
    if area is None:
        return (h, w, 0, 0)
    ah, aw, ay, ax = (int(v) // 8 for v in area)
    ay, ax = min(ay, h - 1), min(ax, w - 1)
    ah, aw = max(1, min(ah, h - ay)), max(1, min(aw, w - ax))
    return (ah, aw, ay, ax)


def latent_mask(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A conditioning mask ``[B,H,W]`` resized to ``[B,h,w]`` (bilinear, as ComfyUI)."""
    m = mask.float()
    m = m[None] if m.ndim == 2 else m
    if m.shape[-2:] != (h, w):
        m = torch.nn.functional.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return m


def mask_bounds(mask: torch.Tensor, h: int, w: int) -> tuple[int, int, int, int]:
    """``(height, width, y, x)`` in latent pixels of where the mask is not 0 (at least 8 a side,
    within the latent); an all-zero mask gives the 8x8 corner."""
    any_b = latent_mask(mask, h, w).abs().amax(dim=0) > 0
    if not bool(any_b.any()):
        return (min(8, h), min(8, w), 0, 0)
    ys, xs = torch.nonzero(any_b, as_tuple=True)
    y, x = int(ys.min()), int(xs.min())
    ah, aw = max(8, int(ys.max()) - y + 1), max(8, int(xs.max()) - x + 1)
    return (min(ah, h - y), min(aw, w - x), y, x)


def area_weight(area: tuple[int, int, int, int], h: int, w: int, strength: float,
                feather: int = 8, device=None) -> torch.Tensor:
    """``[1,1,ah,aw]`` weight of an area prediction (strength, feathered inner borders)."""
    ah, aw, ay, ax = area
    mult = torch.full((1, 1, ah, aw), float(strength), device=device)
    if (ah, aw) == (h, w):
        return mult
    rr = min(feather, ah // 4, aw // 4)
    for t in range(rr):
        f = (t + 1) / rr
        if ay != 0:
            mult[:, :, t : t + 1, :] *= f
        if ay + ah < h:
            mult[:, :, ah - 1 - t : ah - t, :] *= f
        if ax != 0:
            mult[:, :, :, t : t + 1] *= f
        if ax + aw < w:
            mult[:, :, :, aw - 1 - t : aw - t] *= f
    return mult


def combine(preds: list[tuple[torch.Tensor, tuple[int, int, int, int], torch.Tensor]], like: torch.Tensor) -> torch.Tensor:
    """Weighted average of ``(prediction over its area, area, weight)`` into a full-size tensor."""
    if len(preds) == 1 and preds[0][0].shape == like.shape and float(preds[0][2].min()) == float(preds[0][2].max()) != 0:
        return preds[0][0]
    out = torch.zeros_like(like)
    count = torch.full_like(like[:, :1], 1e-37)
    for pred, (ah, aw, ay, ax), weight in preds:
        weight = weight.to(like)
        out[:, :, ay : ay + ah, ax : ax + aw] += pred * weight
        count[:, :, ay : ay + ah, ax : ax + aw] += weight
    return out / count


def guidance(cond: torch.Tensor, uncond: torch.Tensor | None, cfg: float) -> torch.Tensor:
    if uncond is None:
        return cond
    return uncond + (cond - uncond) * cfg
