"""MaskPreview: show a MASK in the editor as a grey image, as ComfyUI's MaskPreview
(comfy_extras/nodes_mask.py) turns it into one: the mask value in every colour channel."""

from __future__ import annotations

import os

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, node

from .image_io import _save


@node("MaskPreview", category="mask", output=True,
      description="Show masks in the editor as grey images (white = 1), kept in a temporary folder.",
      inputs=[Input.link("mask", T.MASK)], keywords=("show", "view"))
def mask_preview(ctx, mask):
    m = mask if mask.ndim >= 2 else None
    if m is None:
        raise ValueError(f"MaskPreview: input 'mask' must be a MASK [batch, height, width], got shape {tuple(mask.shape)}")
    image = m.reshape(-1, 1, m.shape[-2], m.shape[-1]).movedim(1, -1).expand(-1, -1, -1, 3).float()
    _save(ctx, image, os.path.join(ctx.temp_dir, "previews"), "mask", embed=True)
    return {}
