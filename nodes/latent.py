"""Latent nodes: empty latents, resizing, batch slicing/repeating, noise masks.

LATENT values are dicts ``{"samples": [B,4,h,w], "noise_mask"?: [B,1,H,W] (any resolution; 1 =
repaint), "batch_index"?: [int]}``. ``batch_index`` records which item of the original batch each
sample is, so a sliced or repeated batch keeps the per-item noise of its seed (see
:mod:`nodegen.diffusion.noise`).
"""

from __future__ import annotations

import math

from nodegen.image.latent_resize import UPSCALE_METHODS, resize
from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")

MAX_SIZE = 16384


def _multiple_of_8(name: str, value: int) -> None:
    if value % 8:
        lo, hi = value // 8 * 8, value // 8 * 8 + 8
        raise ValueError(f"input '{name}' must be a multiple of 8 (latents are 1/8 of the image size); "
                         f"got {value}, use {lo if lo else hi} or {hi}")


def _samples(latent, name: str = "samples") -> torch.Tensor:
    if not isinstance(latent, dict) or not torch.is_tensor(latent.get("samples")):
        raise TypeError(f"input '{name}' must be a LATENT (a dict with 'samples')")
    return latent["samples"]


@node("EmptyLatentImage", category="latent", description="A batch of empty (zero) latents to sample from.",
      inputs=[Input.int("width", 512, min=16, max=MAX_SIZE, step=8), Input.int("height", 512, min=16, max=MAX_SIZE, step=8),
              Input.int("batch_size", 1, min=1, max=4096)],
      outputs=[Output("latent", T.LATENT)], keywords=("new", "blank", "txt2img"))
def empty_latent_image(ctx, width, height, batch_size):
    _multiple_of_8("width", width)
    _multiple_of_8("height", height)
    return {"samples": torch.zeros(batch_size, 4, height // 8, width // 8)}


@node("LatentUpscale", category="latent", description="Resize latents to a pixel size (hires fix).",
      inputs=[Input.link("samples", T.LATENT), Input.choice("upscale_method", UPSCALE_METHODS, "nearest-exact"),
              Input.int("width", 512, min=0, max=MAX_SIZE, step=8,
                        description="0 = keep the aspect ratio from height"),
              Input.int("height", 512, min=0, max=MAX_SIZE, step=8,
                        description="0 = keep the aspect ratio from width"),
              Input.choice("crop", ["disabled", "center"], "disabled")],
      outputs=[Output("latent", T.LATENT)])
def latent_upscale(ctx, samples, upscale_method, width, height, crop):
    s = _samples(samples)
    if width == 0 and height == 0:
        return dict(samples)
    _multiple_of_8("width", width)
    _multiple_of_8("height", height)
    h, w = s.shape[2], s.shape[3]
    if width == 0:
        width = max(8, round(height * w / h / 8) * 8)
    if height == 0:
        height = max(8, round(width * h / w / 8) * 8)
    out = dict(samples)
    out["samples"] = resize(s, width // 8, height // 8, upscale_method, crop)
    return out


@node("LatentCrop", category="latent/transform",
      description="Cut a rectangle out of latents (pixels; rounded down to the latent's 8-pixel grid, "
                  "at least 64 pixels kept, as ComfyUI).",
      inputs=[Input.link("samples", T.LATENT), Input.int("width", 512, min=64, max=MAX_SIZE, step=8),
              Input.int("height", 512, min=64, max=MAX_SIZE, step=8), Input.int("x", 0, min=0, max=MAX_SIZE, step=8),
              Input.int("y", 0, min=0, max=MAX_SIZE, step=8)],
      outputs=[Output("latent", T.LATENT)])
def latent_crop(ctx, samples, width, height, x, y):
    s = _samples(samples)
    x, y = min(x // 8, s.shape[3] - 8), min(y // 8, s.shape[2] - 8)  # ComfyUI's 64-pixel minimum
    x, y = max(x, 0), max(y, 0)
    out = dict(samples)
    out["samples"] = s[:, :, y : y + height // 8, x : x + width // 8]
    return out  # a noise mask is kept whole, as ComfyUI keeps it


@node("LatentUpscaleBy", category="latent", description="Scale latents by a factor.",
      inputs=[Input.link("samples", T.LATENT), Input.choice("upscale_method", UPSCALE_METHODS, "nearest-exact"),
              Input.float("scale_by", 1.5, min=0.01, max=8.0, step=0.01)],
      outputs=[Output("latent", T.LATENT)])
def latent_upscale_by(ctx, samples, upscale_method, scale_by):
    s = _samples(samples)
    width, height = round(s.shape[3] * scale_by), round(s.shape[2] * scale_by)
    if width < 1 or height < 1:
        raise ValueError(f"input 'scale_by': {scale_by} makes the latent smaller than one pixel")
    out = dict(samples)
    out["samples"] = resize(s, width, height, upscale_method)
    return out


def _batch_index(latent: dict) -> list[int]:
    s = latent["samples"]
    idx = latent.get("batch_index")
    return list(idx) if idx is not None else list(range(s.shape[0]))


def _slice_mask(mask, start: int, length: int, batch: int):
    if mask is None:
        return None
    if mask.shape[0] == 1:
        return mask
    if mask.shape[0] < batch:
        mask = mask.repeat(math.ceil(batch / mask.shape[0]), *([1] * (mask.ndim - 1)))[:batch]
    return mask[start : start + length].clone()


@node("LatentFromBatch", category="latent/batch", description="Take items out of a latent batch.",
      inputs=[Input.link("samples", T.LATENT), Input.int("batch_index", 0, min=0, max=4095),
              Input.int("length", 1, min=1, max=4096)],
      outputs=[Output("latent", T.LATENT)])
def latent_from_batch(ctx, samples, batch_index, length):
    s = _samples(samples)
    b = s.shape[0]
    if batch_index >= b:
        raise ValueError(f"input 'batch_index' is {batch_index} but the batch has only {b} item(s) (0..{b - 1})")
    length = min(length, b - batch_index)
    out = dict(samples)
    out["samples"] = s[batch_index : batch_index + length].clone()
    out["batch_index"] = _batch_index(samples)[batch_index : batch_index + length]
    if samples.get("noise_mask") is not None:
        out["noise_mask"] = _slice_mask(samples["noise_mask"], batch_index, length, b)
    return out


@node("RepeatLatentBatch", category="latent/batch", description="Repeat a latent batch.",
      inputs=[Input.link("samples", T.LATENT), Input.int("amount", 1, min=1, max=64)],
      outputs=[Output("latent", T.LATENT)])
def repeat_latent_batch(ctx, samples, amount):
    s = _samples(samples)
    out = dict(samples)
    out["samples"] = s.repeat(amount, 1, 1, 1)
    mask = samples.get("noise_mask")
    if mask is not None and mask.shape[0] > 1:
        if mask.shape[0] < s.shape[0]:
            mask = mask.repeat(math.ceil(s.shape[0] / mask.shape[0]), *([1] * (mask.ndim - 1)))[: s.shape[0]]
        out["noise_mask"] = mask.repeat(amount, *([1] * (mask.ndim - 1)))
    idx = _batch_index(samples)
    offset = max(idx) + 1
    out["batch_index"] = [i + k * offset for k in range(amount) for i in idx]
    return out


@node("SetLatentNoiseMask", category="latent/inpaint",
      description="Only repaint where the mask is 1 (the rest of the latent is kept).",
      inputs=[Input.link("samples", T.LATENT), Input.link("mask", T.MASK)],
      outputs=[Output("latent", T.LATENT)])
def set_latent_noise_mask(ctx, samples, mask):
    _samples(samples)
    if not torch.is_tensor(mask) or mask.ndim not in (2, 3):
        raise ValueError("input 'mask' must be a MASK [batch, height, width]")
    m = mask if mask.ndim == 3 else mask[None]
    out = dict(samples)
    out["noise_mask"] = m.reshape(m.shape[0], 1, m.shape[1], m.shape[2]).float()
    return out
