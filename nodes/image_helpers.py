"""Image helpers published workflows use: scale to a pixel count, join two image batches, read an
image's size."""

from __future__ import annotations

import math

from nodegen.image.convert import check_image
from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

from .image_ops import SCALE_METHODS, center_crop_to_aspect, resize

torch = lazy_import("torch")


@node("ImageScaleToTotalPixels", category="image/transform",
      description="Resize images to about a number of megapixels, keeping the aspect ratio.",
      inputs=[Input.link("image", T.IMAGE), Input.choice("upscale_method", SCALE_METHODS, "nearest-exact"),
              Input.float("megapixels", 1.0, min=0.0001, max=16.0, step=0.01,
                          description="Target size in megapixels (1 MP = 1024 x 1024)"),
              Input.int("resolution_steps", 1, min=1, max=256,
                        description="Round width and height to multiples of this")],
      outputs=[Output("image", T.IMAGE)], keywords=("resize", "megapixels"))
def image_scale_to_total_pixels(ctx, image, upscale_method, megapixels, resolution_steps=1):
    check_image(image)
    h, w = image.shape[1:3]
    scale = math.sqrt(int(megapixels * 1024 * 1024) / (w * h))
    width = max(resolution_steps, round(w * scale / resolution_steps) * resolution_steps)
    height = max(resolution_steps, round(h * scale / resolution_steps) * resolution_steps)
    return resize(image, int(width), int(height), upscale_method)


@node("ImageBatch", category="image",
      description="Join two image batches (the second is resized to the first's size, centre-cropped).",
      inputs=[Input.link("image1", T.IMAGE), Input.link("image2", T.IMAGE)],
      outputs=[Output("image", T.IMAGE)], keywords=("batch", "join", "concat"))
def image_batch(ctx, image1, image2):
    check_image(image1, "image1")
    check_image(image2, "image2")
    if image2.shape[-1] != image1.shape[-1]:
        raise ValueError(f"input 'image2' has {image2.shape[-1]} channels but 'image1' has {image1.shape[-1]}")
    if image2.shape[1:3] != image1.shape[1:3]:
        h, w = image1.shape[1:3]
        image2 = resize(center_crop_to_aspect(image2, w, h), w, h, "bilinear")
    return torch.cat([image1, image2.to(image1)], dim=0)


@node("EmptyImage", category="image", description="A batch of images of one colour (0xRRGGBB).",
      inputs=[Input.int("width", 512, min=1, max=16384), Input.int("height", 512, min=1, max=16384),
              Input.int("batch_size", 1, min=1, max=4096),
              Input.int("color", 0, min=0, max=0xFFFFFF, description="The colour as 0xRRGGBB (0: black)")],
      outputs=[Output("image", T.IMAGE)], keywords=("blank", "solid", "fill"))
def empty_image(ctx, width, height, batch_size=1, color=0):
    rgb = [((color >> shift) & 0xFF) / 0xFF for shift in (16, 8, 0)]
    return torch.tensor(rgb, dtype=torch.float32).expand(batch_size, height, width, 3).contiguous()


@node("ImageFromBatch", category="image/batch", description="Take images out of a batch.",
      inputs=[Input.link("image", T.IMAGE),
              Input.int("batch_index", 0, min=-4096, max=4095, description="First image (negative: from the end)"),
              Input.int("length", 1, min=1, max=4096)],
      outputs=[Output("image", T.IMAGE)])
def image_from_batch(ctx, image, batch_index, length):
    check_image(image)
    b = image.shape[0]
    if batch_index < 0:  # newer ComfyUI counts from the end
        batch_index += b
        if batch_index < 0:
            raise ValueError(f"input 'batch_index' is {batch_index - b} but the batch has only {b} image(s)")
    if batch_index >= b:
        raise ValueError(f"input 'batch_index' is {batch_index} but the batch has only {b} image(s) (0..{b - 1})")
    return image[batch_index : batch_index + min(length, b - batch_index)].clone()


@node("GetImageSize", category="image", description="An image batch's width, height and batch size.",
      inputs=[Input.link("image", T.IMAGE)],
      outputs=[Output("width", T.INT), Output("height", T.INT), Output("batch_size", T.INT)],
      keywords=("dimensions", "resolution", "width", "height"))
def get_image_size(ctx, image):
    check_image(image)
    return {"width": int(image.shape[2]), "height": int(image.shape[1]), "batch_size": int(image.shape[0])}
