"""MaskPreview: show a MASK in the editor as a grey image, as ComfyUI's MaskPreview
(comfy_extras/nodes_mask.py) turns it into one: the mask value in every colour channel."""

from __future__ import annotations

import os

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, node

from .image_io import _save
from .masks import mask_to_image


@node("MaskPreview", category="mask", output=True,
      description="Show masks in the editor as grey images (white = 1), kept in a temporary folder.",
      inputs=[Input.link("mask", T.MASK)], keywords=("show", "view"))
def mask_preview(ctx, mask):
    image = mask_to_image.run(ctx, mask)  # MaskToImage's grey image (the MASK socket checked the shape)
    _save(ctx, image, os.path.join(ctx.temp_dir, "previews"), "mask", embed=True)
    return {}
