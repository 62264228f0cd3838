"""CONDITIONING values: a list of :class:`CondItem`.

Several CondItems in one CONDITIONING are combined by averaging their predictions (ComfyUI's
"combine"); helpers for combine/concat/zero-out live here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class CondItem:
    """One conditioning entry.

    * ``embeds``: ``[1, tokens, dim]`` (tokens a multiple of 77 for CLIP text).
    * ``pooled``: ``[1, dim_pooled]`` (SDXL ``text_embeds``) or None.
    * ``extras``: free-form options, e.g. "width", "height", "crop_w", "crop_h",
      "target_width", "target_height" (SDXL size conditioning), "strength", "area", "mask",
      "mask_strength", "set_area_to_bounds", "timestep_start" / "timestep_end" (fractions of the
      schedule, 0 = start), "controls".
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def copy(self, **changes: Any) -> CondItem:
        """A shallow copy (tensors shared, extras dict copied) with ``changes`` applied."""
        item = CondItem(self.embeds, self.pooled, dict(self.extras))
        for key, value in changes.items():
            setattr(item, key, value)
        return item


# -- helpers for the conditioning nodes (combine / concat / zero-out / area) -------------------

def combine(a: list[CondItem], b: list[CondItem]) -> list[CondItem]:
    """Both lists' items: their predictions are averaged by the denoiser (weight ``strength``)."""
    return list(a) + list(b)


def concat(to: list[CondItem], frm: list[CondItem]) -> list[CondItem]:
    """Every item of ``to`` with the embeddings of ``frm``'s first item appended along the token
    axis (pooled and extras of ``to`` are kept)."""
    if not frm:
        raise ValueError("conditioning_from is empty")
    add = frm[0].embeds
    out = []
    for item in to:
        if item.embeds.shape[-1] != add.shape[-1]:
            raise ValueError(f"cannot concat conditionings of width {item.embeds.shape[-1]} and {add.shape[-1]} "
                             "(they come from different text encoders)")
        out.append(item.copy(embeds=torch.cat([item.embeds, add.to(item.embeds)], dim=1)))
    return out


def zero_out(cond: list[CondItem]) -> list[CondItem]:
    """Items with zero embeddings and zero pooled output (SDXL's "empty" negative)."""
    return [it.copy(embeds=torch.zeros_like(it.embeds),
                    pooled=None if it.pooled is None else torch.zeros_like(it.pooled)) for it in cond]


def set_area(cond: list[CondItem], width: int, height: int, x: int, y: int, strength: float) -> list[CondItem]:
    """Items restricted to a rectangle (image pixels; ``extras["area"] = (height, width, y, x)``)."""
    return [it.copy(extras=dict(_without(it.extras, "area_fraction"), area=(int(height), int(width), int(y), int(x)),
                                strength=float(strength))) for it in cond]


def set_area_fraction(cond: list[CondItem], width: float, height: float, x: float, y: float,
                      strength: float) -> list[CondItem]:
    """Items restricted to a rectangle given as fractions of the image
    (``extras["area_fraction"] = (height, width, y, x)``; ComfyUI's percentage areas)."""
    return [it.copy(extras=dict(_without(it.extras, "area"),
                                area_fraction=(float(height), float(width), float(y), float(x)),
                                strength=float(strength))) for it in cond]


def _without(extras: dict, key: str) -> dict:
    return {k: v for k, v in extras.items() if k != key}


def average(to: list[CondItem], frm: list[CondItem], to_strength: float) -> list[CondItem]:
    """Every item of ``to`` blended with ``frm``'s first item: ``to * s + frm * (1 - s)`` on the
    embeddings (``frm``'s tokens cut or zero-padded to ``to``'s length) and on the pooled output
    (``frm``'s pooled output is taken where ``to`` has none), as ComfyUI's ConditioningAverage."""
    if not frm:
        raise ValueError("conditioning_from is empty")
    src, src_pooled = frm[0].embeds, frm[0].pooled
    s = float(to_strength)
    out = []
    for item in to:
        t1 = item.embeds
        if src.shape[-1] != t1.shape[-1]:
            raise ValueError(f"cannot average conditionings of width {t1.shape[-1]} and {src.shape[-1]} "
                             "(they come from different text encoders)")
        t0 = src[:, : t1.shape[1]].to(t1)
        if t0.shape[1] < t1.shape[1]:
            t0 = torch.cat([t0, t0.new_zeros(t0.shape[0], t1.shape[1] - t0.shape[1], t1.shape[2])], dim=1)
        pooled = item.pooled
        if src_pooled is not None:
            pooled = src_pooled if pooled is None else pooled * s + src_pooled.to(pooled) * (1.0 - s)
        out.append(item.copy(embeds=t1 * s + t0 * (1.0 - s), pooled=pooled))
    return out


def set_timestep_range(cond: list[CondItem], start: float, end: float) -> list[CondItem]:
    """Items used only while the schedule's progress lies in ``[start, end]`` (0 = first step)."""
    return [it.copy(extras=dict(it.extras, timestep_start=float(start), timestep_end=float(end))) for it in cond]


def set_mask(cond: list[CondItem], mask: torch.Tensor, strength: float, to_bounds: bool) -> list[CondItem]:
    """Items weighted by ``mask`` (``[B,H,W]``, any size: resized to the latent) times ``strength``;
    ``to_bounds`` also runs them only on the mask's bounding box (ComfyUI's "mask bounds")."""
    m = mask if mask.ndim >= 3 else mask[None]
    return [it.copy(extras=dict(it.extras, mask=m, mask_strength=float(strength), set_area_to_bounds=bool(to_bounds)))
            for it in cond]
