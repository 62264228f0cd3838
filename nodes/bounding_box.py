"""Bounding boxes and the crop that takes one, as ComfyUI's PrimitiveBoundingBox and ImageCropV2
(comfy_extras/nodes_images.py; its front end now writes ImageCropV2 where ImageCrop was). A
BOUNDING_BOX is ``{"x", "y", "width", "height"}`` in pixels; ImageCropV2's own box is four inputs
here (ComfyUI's ``crop_region`` widget), which a linked box replaces."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

MAX_SIZE = 16384


def _box_inputs(optional_note: str = ""):
    return [Input.int("x", 0, min=0, max=MAX_SIZE, description="Left edge" + optional_note),
            Input.int("y", 0, min=0, max=MAX_SIZE, description="Top edge" + optional_note),
            Input.int("width", 512, min=1, max=MAX_SIZE, description="Width" + optional_note),
            Input.int("height", 512, min=1, max=MAX_SIZE, description="Height" + optional_note)]


@node("PrimitiveBoundingBox", category="utils/primitive", display_name="Bounding Box",
      description="A rectangle in pixels (for ImageCropV2 and other nodes that take a region).",
      inputs=_box_inputs(), outputs=[Output("bounding_box", T.BOUNDING_BOX)], keywords=("region", "rectangle"))
def primitive_bounding_box(ctx, x=0, y=0, width=512, height=512):
    return {"x": int(x), "y": int(y), "width": int(width), "height": int(height)}


@node("ImageCropV2", category="image/transform", display_name="Crop Image",
      description="Crop images to a region (ComfyUI's rule: the corner is kept inside the image, the size is "
                  "cut at its edges).",
      inputs=[Input.link("image", T.IMAGE), *_box_inputs(" (unless crop_region is connected)"),
              Input.link("crop_region", T.BOUNDING_BOX, optional=True, description="A region that replaces x, y, "
                                                                                   "width and height")],
      outputs=[Output("image", T.IMAGE)], keywords=("crop", "cut", "trim"))
def image_crop_v2(ctx, image, x=0, y=0, width=512, height=512, crop_region=None):
    from nodegen.image.convert import check_image

    check_image(image, "image")
    if crop_region is not None:
        if not isinstance(crop_region, dict):
            raise ValueError(f"ImageCropV2: input 'crop_region' must be a BOUNDING_BOX, got {type(crop_region).__name__}")
        x, y = crop_region.get("x", 0), crop_region.get("y", 0)
        width, height = crop_region.get("width", 512), crop_region.get("height", 512)
    x, y = min(int(x), image.shape[2] - 1), min(int(y), image.shape[1] - 1)
    return image[:, y:y + int(height), x:x + int(width), :]
