"""Colour quantisation as ComfyUI's ImageQuantize (comfy_extras/nodes_post_processing.py) does it
with Pillow: a palette of at most ``colors`` colours from the image itself (median cut), then each
pixel mapped to it plainly, with Floyd-Steinberg error diffusion, or with ordered (Bayer) dithering
of order 2, 4, 8 or 16 added before the plain mapping."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

DITHERS = ["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"]


def quantize(image: torch.Tensor, colors: int, dither: str) -> torch.Tensor:
    """``image`` [B,H,W,C] in [0, 1], each item's colours reduced to its own palette of ``colors``
    (an alpha channel is kept as it is)."""
    if dither not in DITHERS:
        raise ValueError(f"unknown dither {dither!r}; choose one of {', '.join(DITHERS)}")
    out = image.clone()
    for b in range(image.shape[0]):
        im = Image.fromarray((image[b, ..., :3] * 255).to(torch.uint8).cpu().numpy(), mode="RGB")
        palette = im.quantize(colors=colors)  # the palette (Pillow needs one image quantised first)
        if dither == "none":
            q = im.quantize(palette=palette, dither=Image.Dither.NONE)
        elif dither == "floyd-steinberg":
            q = im.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
        else:
            q = _bayer(im, palette, int(dither.split("-")[-1]))
        out[b, ..., :3] = torch.from_numpy(np.array(q.convert("RGB"))).float().to(image.device) / 255
    return out


def _bayer_matrix(n: int) -> np.ndarray:
    """The normalised Bayer threshold matrix of size 2^n (entries centred on 0)."""
    if n == 0:
        return np.zeros((1, 1), "float32")
    q = 4**n
    m = q * _bayer_matrix(n - 1)
    return np.block([[m - 1.5, m + 0.5], [m + 1.5, m - 0.5]]) / q


def _bayer(im: Image.Image, palette: Image.Image, order: int) -> Image.Image:
    num_colors = len(palette.getpalette()) // 3
    spread = 2 * 256 / num_colors
    matrix = torch.from_numpy(spread * _bayer_matrix(int(math.log2(order))) + 0.5)
    pixels = torch.from_numpy(np.array(im).astype(np.float32))
    reps = (math.ceil(pixels.shape[0] / matrix.shape[0]), math.ceil(pixels.shape[1] / matrix.shape[1]))
    tiled = matrix.tile(reps).unsqueeze(-1)
    pixels.add_(tiled[: pixels.shape[0], : pixels.shape[1]]).clamp_(0, 255)
    dithered = Image.fromarray(pixels.to(torch.uint8).numpy())
    return dithered.quantize(palette=palette, dither=Image.Dither.NONE)
