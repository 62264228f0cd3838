"""Resizing ``[B, C, h, w]`` tensors exactly as ComfyUI's ``comfy.utils.common_upscale`` does, with
its ``lanczos`` (PIL's Lanczos on 8-bit copies of the images, so the result is quantised to
1/255) besides :func:`nodegen.image.latent_resize.resize`'s methods (plain ``interpolate``, no
antialiasing; bislerp). One-channel inputs (masks) go through Lanczos as grey images (ComfyUI's
own call fails on them).
"""

from __future__ import annotations

import numpy as np
import torch

from nodegen.image.latent_resize import resize
from nodegen.image.resize_rules import center_crop_box

METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos", "bislerp")


def lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    from PIL import Image

    out = []
    for item in samples:
        arr = np.clip(255.0 * item.movedim(0, -1).detach().cpu().float().numpy(), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        res = np.asarray(img.resize((width, height), resample=Image.Resampling.LANCZOS)).astype(np.float32) / 255.0
        out.append(torch.from_numpy(res.reshape(height, width, -1)).movedim(-1, 0))
    return torch.stack(out).to(samples.device, samples.dtype)


def common_upscale(samples: torch.Tensor, width: int, height: int, method: str, crop: str = "disabled") -> torch.Tensor:
    if method not in METHODS:
        raise ValueError(f"unknown scale method {method!r}; choose one of {', '.join(METHODS)}")
    if crop == "center":
        x, y, w, h = center_crop_box(samples.shape[-1], samples.shape[-2], width, height)
        samples = samples[..., y:y + h, x:x + w]
    if method == "lanczos":
        return lanczos(samples, width, height)
    return resize(samples, width, height, method)
