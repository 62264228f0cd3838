"""Mask nodes. MASK = float ``[B,H,W]`` in [0,1], 1 = the area to change (repaint).

Rule for masks from images: a channel's value is the mask directly (ImageToMask); LoadImage's
MASK output is ``1 - alpha`` (transparent pixels are the ones to repaint), as in ComfyUI."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")

CHANNELS = ["red", "green", "blue", "alpha"]


@node("ImageToMask", category="mask", description="One channel of an image as a mask.",
      inputs=[Input.link("image", T.IMAGE), Input.choice("channel", CHANNELS, "red")],
      outputs=[Output("mask", T.MASK)])
def image_to_mask(ctx, image, channel):
    if not torch.is_tensor(image) or image.ndim != 4:
        raise ValueError("input 'image' must be an IMAGE [batch, height, width, channels]")
    c = CHANNELS.index(channel)
    if c >= image.shape[-1]:
        raise ValueError(f"input 'channel': the image has no {channel} channel ({image.shape[-1]} channels)")
    return image[..., c].float().clone()


@node("MaskToImage", category="mask", description="A mask as a grey RGB image.",
      inputs=[Input.link("mask", T.MASK)], outputs=[Output("image", T.IMAGE)])
def mask_to_image(ctx, mask):
    if not torch.is_tensor(mask) or mask.ndim not in (2, 3):
        raise ValueError("input 'mask' must be a MASK [batch, height, width]")
    m = mask if mask.ndim == 3 else mask[None]
    return m.float()[..., None].expand(-1, -1, -1, 3).contiguous()


@node("InvertMask", category="mask", description="1 - mask.",
      inputs=[Input.link("mask", T.MASK)], outputs=[Output("mask", T.MASK)])
def invert_mask(ctx, mask):
    if not torch.is_tensor(mask):
        raise ValueError("input 'mask' must be a MASK")
    return 1.0 - mask.float()
