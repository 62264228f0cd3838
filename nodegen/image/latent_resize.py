"""Resizing ``[B, C, h, w]`` tensors as ComfyUI's ``common_upscale`` does: optionally cut to the
target's aspect ratio around the centre first, then interpolate (or bislerp). Used by the latent
nodes (LatentUpscale, LatentUpscaleBy, the latent arithmetic) and by the models' extra input
channels (:mod:`nodegen.diffusion.flux_concat`).
"""

from __future__ import annotations

from typing import Any

UPSCALE_METHODS = ["nearest-exact", "bilinear", "bicubic", "area", "bislerp"]


def resize(samples: Any, width: int, height: int, method: str, crop: str = "disabled") -> Any:
    """Resize ``[B,C,h,w]`` to ``[B,C,height,width]``; ``crop="center"`` first cuts the input to
    the target aspect ratio."""
    import torch.nn.functional as F

    if method not in UPSCALE_METHODS:
        raise ValueError(f"unknown upscale_method {method!r}; choose one of {', '.join(UPSCALE_METHODS)}")
    s = samples
    if crop == "center":
        from nodegen.image.resize_rules import center_crop_box

        x, y, cut_w, cut_h = center_crop_box(s.shape[3], s.shape[2], width, height)
        s = s[:, :, y : y + cut_h, x : x + cut_w]
    elif crop != "disabled":
        raise ValueError(f"unknown crop {crop!r}; use 'disabled' or 'center'")
    if method == "bislerp":
        from nodegen.image.bislerp import bislerp

        return bislerp(s, width, height)
    kw = {"align_corners": False} if method in ("bilinear", "bicubic") else {}
    return F.interpolate(s.float(), size=(height, width), mode=method, **kw).to(samples.dtype)
