"""Pixel-space image operations: scale, blend, invert, crop."""

from __future__ import annotations

from nodegen.image.convert import check_image
from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

SCALE_METHODS = ["nearest-exact", "bilinear", "bicubic", "lanczos", "area"]
MAX_SIZE = 16384


def resize(image, width: int, height: int, method: str):
    """Resize an IMAGE [B,H,W,C] to width x height."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    if width < 1 or height < 1:
        raise ValueError(f"target size {width}x{height} is empty")
    if method == "lanczos":
        from PIL import Image

        out = []
        for item in image.detach().float().cpu().numpy():
            chans = [Image.fromarray(item[..., c]).resize((width, height), Image.Resampling.LANCZOS)
                     for c in range(item.shape[-1])]
            out.append(np.stack([np.asarray(c) for c in chans], -1))
        return torch.from_numpy(np.stack(out)).clamp(0, 1).to(image.device)
    x = image.movedim(-1, 1)
    kw = {"antialias": True} if method in ("bilinear", "bicubic") else {}
    x = F.interpolate(x, size=(height, width), mode=method, **kw)
    return x.movedim(1, -1).clamp(0, 1)


def center_crop_to_aspect(image, width: int, height: int):
    _, h, w, _ = image.shape
    target = width / height
    if w / h > target:
        nw = max(1, round(h * target))
        x0 = (w - nw) // 2
        return image[:, :, x0:x0 + nw]
    nh = max(1, round(w / target))
    y0 = (h - nh) // 2
    return image[:, y0:y0 + nh]


@node("ImageScale", category="image/transform",
      description="Resize images to a size (0 keeps the aspect ratio from the other side).",
      # version 1 called ``method`` ``upscale_method`` (ComfyUI's name); see docs/VERSIONING.md
      version=2, migrations={1: lambda inputs: {("method" if k == "upscale_method" else k): v
                                                for k, v in inputs.items()}},
      inputs=[Input.link("image", T.IMAGE), Input.choice("method", SCALE_METHODS, "bilinear"),
              Input.int("width", 512, min=0, max=MAX_SIZE, step=1),
              Input.int("height", 512, min=0, max=MAX_SIZE, step=1),
              Input.choice("crop", ["disabled", "center"], "disabled")],
      outputs=[Output("image", T.IMAGE)], keywords=("resize", "upscale", "downscale"))
def image_scale(ctx, image, method, width, height, crop):
    check_image(image)
    _, h, w, _ = image.shape
    if width == 0 and height == 0:
        return image
    if width == 0:
        width = max(1, round(w * height / h))
    if height == 0:
        height = max(1, round(h * width / w))
    if crop == "center":
        image = center_crop_to_aspect(image, width, height)
    return resize(image, width, height, method)


@node("ImageScaleBy", category="image/transform", description="Resize images by a factor.",
      inputs=[Input.link("image", T.IMAGE), Input.choice("method", SCALE_METHODS, "bilinear"),
              Input.float("scale_by", 1.0, min=0.01, max=8.0, step=0.01)],
      outputs=[Output("image", T.IMAGE)], keywords=("resize", "upscale"))
def image_scale_by(ctx, image, method, scale_by):
    check_image(image)
    _, h, w, _ = image.shape
    return resize(image, max(1, round(w * scale_by)), max(1, round(h * scale_by)), method)


BLEND_MODES = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]


def _blend(a, b, mode: str):
    import torch

    if mode == "normal":
        return b
    if mode == "multiply":
        return a * b
    if mode == "screen":
        return 1 - (1 - a) * (1 - b)
    if mode == "overlay":
        return torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    if mode == "soft_light":
        return (1 - 2 * b) * a * a + 2 * b * a
    if mode == "difference":
        return (a - b).abs()
    raise ValueError(f"unknown blend mode {mode!r}")


@node("ImageBlend", category="image", description="Blend image2 over image1 with a mode and a factor.",
      inputs=[Input.link("image1", T.IMAGE), Input.link("image2", T.IMAGE),
              Input.float("blend_factor", 0.5, min=0.0, max=1.0, step=0.01),
              Input.choice("blend_mode", BLEND_MODES, "normal")],
      outputs=[Output("image", T.IMAGE)], keywords=("mix", "composite"))
def image_blend(ctx, image1, image2, blend_factor, blend_mode):
    check_image(image1, "image1")
    check_image(image2, "image2")
    if image2.shape[1:3] != image1.shape[1:3]:
        image2 = resize(image2, image1.shape[2], image1.shape[1], "bicubic")
    c = min(image1.shape[-1], image2.shape[-1], 3)
    a, b = image1[..., :c], image2[..., :c].to(image1.device)
    if b.shape[0] != a.shape[0]:
        if b.shape[0] != 1 and a.shape[0] != 1:
            raise ValueError(f"image1 has {a.shape[0]} images and image2 {b.shape[0]}: "
                             f"batches must match, or one must hold one image")
    blended = _blend(a, b, blend_mode)
    return (a * (1 - blend_factor) + blended * blend_factor).clamp(0, 1)


@node("ImageInvert", category="image", description="Invert the colours (1 - value).",
      inputs=[Input.link("image", T.IMAGE)], outputs=[Output("image", T.IMAGE)], keywords=("negative",))
def image_invert(ctx, image):
    check_image(image)
    out = image.clone()
    out[..., :3] = 1.0 - out[..., :3]
    return out


@node("ImageCrop", category="image/transform", description="Cut a rectangle out of images.",
      inputs=[Input.link("image", T.IMAGE),
              Input.int("width", 512, min=1, max=MAX_SIZE), Input.int("height", 512, min=1, max=MAX_SIZE),
              Input.int("x", 0, min=0, max=MAX_SIZE), Input.int("y", 0, min=0, max=MAX_SIZE)],
      outputs=[Output("image", T.IMAGE)], keywords=("cut", "region"))
def image_crop(ctx, image, width, height, x, y):
    check_image(image)
    _, h, w, _ = image.shape
    if x >= w or y >= h:
        raise ValueError(f"crop origin ({x}, {y}) lies outside the {w}x{h} image")
    return image[:, y:min(h, y + height), x:min(w, x + width), :]
