"""Fitting images to a size, with ComfyUI's core rules (comfy_extras/nodes_images.py):
ImageScaleToMaxDimension (the longer side to a length, the aspect ratio kept) and ResizeAndPadImage
(scaled to fit inside a size, then padded around the centre with white or black)."""

from __future__ import annotations

from nodegen.image.convert import check_image
from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

from .image_ops import MAX_SIZE, SCALE_METHODS, resize

torch = lazy_import("torch")


@node("ImageScaleToMaxDimension", category="image/upscaling",
      description="Resize images so that their longer side is largest_size pixels (the aspect ratio kept).",
      inputs=[Input.link("image", T.IMAGE), Input.choice("upscale_method", SCALE_METHODS, "area"),
              Input.int("largest_size", 512, min=1, max=MAX_SIZE, step=1)],
      outputs=[Output("image", T.IMAGE)], keywords=("resize", "longest side", "fit"))
def image_scale_to_max_dimension(ctx, image, upscale_method, largest_size):
    check_image(image)
    height, width = image.shape[1:3]
    if height > width:
        width, height = max(1, round(width / height * largest_size)), largest_size
    elif width > height:
        width, height = largest_size, max(1, round(height / width * largest_size))
    else:
        width = height = largest_size
    return resize(image, int(width), int(height), upscale_method)


@node("ResizeAndPadImage", category="image/transform",
      description="Scale images to fit inside a size (the aspect ratio kept), then pad them to it around the centre.",
      inputs=[Input.link("image", T.IMAGE), Input.int("target_width", 512, min=1, max=MAX_SIZE, step=1),
              Input.int("target_height", 512, min=1, max=MAX_SIZE, step=1),
              Input.choice("padding_color", ["white", "black"], "white"),
              Input.choice("interpolation", ["area", "bicubic", "nearest-exact", "bilinear", "lanczos"], "area")],
      outputs=[Output("image", T.IMAGE)], keywords=("letterbox", "pad", "fit", "resize"))
def resize_and_pad_image(ctx, image, target_width, target_height, padding_color, interpolation):
    check_image(image)
    batch, height, width, channels = image.shape
    scale = min(target_width / width, target_height / height)
    new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
    scaled = resize(image, new_w, new_h, interpolation)
    out = torch.full((batch, target_height, target_width, channels), 0.0 if padding_color == "black" else 1.0,
                     dtype=image.dtype, device=image.device)
    y, x = (target_height - new_h) // 2, (target_width - new_w) // 2
    out[:, y : y + new_h, x : x + new_w] = scaled.to(image.dtype)
    return out
