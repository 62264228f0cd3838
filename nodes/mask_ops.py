"""Mask editing nodes: grow/shrink, feather, mask from a colour, mask composite, and cropping an
image to a mask's bounds (see :mod:`nodegen.image.masks` for the rules)."""

from __future__ import annotations

from nodegen.image.convert import check_image
from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")
M = lazy_import("nodegen.image.masks")

MAX = 16384


@node("GrowMask", category="mask",
      description="Grow a mask by some pixels (a negative amount shrinks it).",
      inputs=[Input.link("mask", T.MASK),
              Input.int("expand", 0, min=-MAX, max=MAX, description="Pixels to grow (negative: shrink)"),
              Input.bool("tapered_corners", True, description="Round the corners (a cross-shaped step)")],
      outputs=[Output("mask", T.MASK)], keywords=("dilate", "erode", "shrink", "expand"))
def grow_mask(ctx, mask, expand, tapered_corners):
    return M.grow(mask, expand, tapered_corners)


@node("FeatherMask", category="mask", description="Fade a mask out linearly towards its edges.",
      inputs=[Input.link("mask", T.MASK), *(Input.int(side, 0, min=0, max=MAX, description=f"Pixels at the {side}")
                                           for side in ("left", "top", "right", "bottom"))],
      outputs=[Output("mask", T.MASK)], keywords=("soften", "blur", "edge"))
def feather_mask(ctx, mask, left, top, right, bottom):
    return M.feather(mask, left, top, right, bottom)


@node("ImageColorToMask", category="mask", description="A mask of the pixels of one exact colour.",
      inputs=[Input.link("image", T.IMAGE),
              Input.int("color", 0, min=0, max=0xFFFFFF, description="The colour as 0xRRGGBB (8 bits each)")],
      outputs=[Output("mask", T.MASK)], keywords=("colour", "select", "key"))
def image_color_to_mask(ctx, image, color):
    check_image(image)
    return M.color_to_mask(image, color)


@node("MaskComposite", category="mask",
      description="Combine a source mask into a destination mask at a position (multiply, add, "
                  "subtract, and, or, xor).",
      inputs=[Input.link("destination", T.MASK), Input.link("source", T.MASK),
              Input.int("x", 0, min=0, max=MAX), Input.int("y", 0, min=0, max=MAX),
              Input.choice("operation", M.OPERATIONS, "multiply")],
      outputs=[Output("mask", T.MASK)])
def mask_composite(ctx, destination, source, x, y, operation):
    return M.composite(destination, source, x, y, operation)


def mask_bounds(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` (end exclusive) of the pixels above 0 in any item, or None."""
    m = M.as_batch(mask).amax(dim=0) > 0
    rows, cols = torch.nonzero(m.any(dim=1)).flatten(), torch.nonzero(m.any(dim=0)).flatten()
    if len(rows) == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@node("ImageCropToMask", category="image/transform",
      description="Crop images (and the mask) to the mask's bounds plus padding, e.g. to inpaint a "
                  "small area at full resolution; also gives the crop's position.",
      inputs=[Input.link("image", T.IMAGE), Input.link("mask", T.MASK),
              Input.int("padding", 0, min=0, max=MAX, description="Pixels around the mask's bounds")],
      outputs=[Output("image", T.IMAGE), Output("mask", T.MASK), Output("x", T.INT), Output("y", T.INT)],
      keywords=("bounds", "bbox", "region"))
def image_crop_to_mask(ctx, image, mask, padding):
    check_image(image)
    m = M.as_batch(mask)
    if m.shape[-2:] != image.shape[1:3]:
        raise ValueError(f"input 'mask' is {m.shape[-1]}x{m.shape[-2]} but the image is "
                         f"{image.shape[2]}x{image.shape[1]}")
    box = mask_bounds(m)
    if box is None:
        raise ValueError("input 'mask' is empty: there is nothing to crop to")
    h, w = image.shape[1:3]
    x0, y0 = max(0, box[0] - padding), max(0, box[1] - padding)
    x1, y1 = min(w, box[2] + padding), min(h, box[3] + padding)
    return {"image": image[:, y0:y1, x0:x1].clone(), "mask": m[:, y0:y1, x0:x1].clone(), "x": x0, "y": y0}


@node("SolidMask", category="mask", description="A mask of one value everywhere.",
      inputs=[Input.float("value", 1.0, min=0.0, max=1.0, step=0.01),
              Input.int("width", 512, min=1, max=MAX), Input.int("height", 512, min=1, max=MAX)],
      outputs=[Output("mask", T.MASK)], keywords=("fill", "constant"))
def solid_mask(ctx, value, width, height):
    return torch.full((1, height, width), float(value), dtype=torch.float32)


@node("CropMask", category="mask", description="Cut a rectangle out of a mask (pixels).",
      inputs=[Input.link("mask", T.MASK), Input.int("x", 0, min=0, max=MAX), Input.int("y", 0, min=0, max=MAX),
              Input.int("width", 512, min=1, max=MAX), Input.int("height", 512, min=1, max=MAX)],
      outputs=[Output("mask", T.MASK)])
def crop_mask(ctx, mask, x, y, width, height):
    if not torch.is_tensor(mask):
        raise ValueError("input 'mask' must be a MASK")
    m = mask.reshape(-1, mask.shape[-2], mask.shape[-1])
    if x >= m.shape[-1] or y >= m.shape[-2]:
        raise ValueError(f"the crop starts at ({x}, {y}), outside the {m.shape[-1]}x{m.shape[-2]} mask")
    return m[:, y : y + height, x : x + width]


@node("ThresholdMask", category="mask", description="1 where the mask is above a value, else 0.",
      inputs=[Input.link("mask", T.MASK), Input.float("value", 0.5, min=0.0, max=1.0, step=0.01)],
      outputs=[Output("mask", T.MASK)], keywords=("binary", "binarize"))
def threshold_mask(ctx, mask, value):
    if not torch.is_tensor(mask):
        raise ValueError("input 'mask' must be a MASK")
    return (mask > value).float()
