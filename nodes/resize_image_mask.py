"""Resize Image/Mask: ComfyUI's ResizeImageMaskNode (which its front end puts in place of
ImageScaleBy in workflows it opens): an IMAGE or a MASK resized by one of nine rules; see
:mod:`nodegen.image.resize_rules`, resampled as ComfyUI's common_upscale
(:mod:`nodegen.image.common_upscale`: no antialiasing, 8-bit Lanczos). The rule's settings are inputs of their own here (ComfyUI's
``resize_type.width`` ... is our ``width`` ...); those of other rules are ignored."""

from __future__ import annotations

from nodegen.image.resize_rules import RESIZE_TYPES
from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

from .image_ops import MAX_SIZE, SCALE_METHODS

_NODE = "ResizeImageMaskNode"


def _as_channels_last(value, name: str):
    """``(tensor [B,H,W,C], was_mask)`` for an IMAGE [B,H,W,C] or a MASK [B,H,W] / [H,W]."""
    shape = tuple(getattr(value, "shape", ()))
    if len(shape) == 4:
        return value, False
    if len(shape) in (2, 3):
        m = value if len(shape) == 3 else value[None]
        return m[..., None], True
    raise ValueError(f"{_NODE}: input '{name}' must be an IMAGE or a MASK, got {type(value).__name__} {shape or ''}")


def _resized(x, width: int, height: int, method: str, crop: str = "disabled"):
    """ComfyUI's common_upscale on a [B,H,W,C] tensor."""
    from nodegen.image.common_upscale import common_upscale

    if width < 1 or height < 1:
        raise ValueError(f"{_NODE}: the target size {width}x{height} is empty")
    return common_upscale(x.movedim(-1, 1), width, height, method, crop).movedim(1, -1)


@node(_NODE, category="image/transform", display_name="Resize Image/Mask",
      description="Resize an image or a mask: to a size, by a factor, by its longer / shorter side, to a width or "
                  "height, to a pixel count, to another image's size, or to a multiple.",
      inputs=[Input.link("input", T.ANY, description="An IMAGE or a MASK"),
              Input.choice("resize_type", list(RESIZE_TYPES), "scale dimensions"),
              Input.int("width", 512, min=0, max=MAX_SIZE, description="scale dimensions / width (0: from the height)"),
              Input.int("height", 512, min=0, max=MAX_SIZE, description="scale dimensions / height (0: from the width)"),
              Input.choice("crop", ["disabled", "center"], "center",
                           description="scale dimensions / match size: cut to the aspect ratio around the centre"),
              Input.float("multiplier", 1.0, min=0.01, max=8.0, step=0.01, description="scale by multiplier"),
              Input.int("longer_size", 512, min=0, max=MAX_SIZE, description="scale longer dimension"),
              Input.int("shorter_size", 512, min=0, max=MAX_SIZE, description="scale shorter dimension"),
              Input.float("megapixels", 1.0, min=0.01, max=16.0, step=0.01, description="scale total pixels"),
              Input.link("match", T.ANY, optional=True, description="match size: the IMAGE or MASK whose size to take"),
              Input.int("multiple", 8, min=1, max=MAX_SIZE, description="scale to multiple"),
              Input.choice("scale_method", SCALE_METHODS, "area")],
      outputs=[Output("resized", T.ANY)], keywords=("resize", "scale", "mask"))
def resize_image_mask(ctx, input, resize_type="scale dimensions", width=512, height=512, crop="center",  # noqa: A002
                      multiplier=1.0, longer_size=512, shorter_size=512, megapixels=1.0, match=None, multiple=8,
                      scale_method="area"):
    from nodegen.image import resize_rules as R

    x, was_mask = _as_channels_last(input, "input")
    _, h, w, _ = x.shape
    if resize_type == "scale to multiple":
        plan = R.multiple_cover(w, h, int(multiple))
        if plan is not None:
            (sw, sh), (x0, y0, tw, th) = plan
            x = _resized(x, sw, sh, scale_method)[:, y0:y0 + th, x0:x0 + tw]
    else:
        crop_mode = crop if resize_type in ("scale dimensions", "match size") else "disabled"
        if resize_type == "match size":
            if match is None:
                raise ValueError(f"{_NODE}: input 'match' must be connected for resize_type 'match size'")
            ref, _ = _as_channels_last(match, "match")
            size = (int(ref.shape[2]), int(ref.shape[1]))
        else:
            size = {"scale dimensions": lambda: R.scale_dimensions(w, h, int(width), int(height)),
                    "scale by multiplier": lambda: R.scale_by(w, h, float(multiplier)),
                    "scale longer dimension": lambda: R.scale_longer(w, h, int(longer_size)),
                    "scale shorter dimension": lambda: R.scale_shorter(w, h, int(shorter_size)),
                    "scale width": lambda: R.scale_dimensions(w, h, int(width), 0),
                    "scale height": lambda: R.scale_dimensions(w, h, 0, int(height)),
                    "scale total pixels": lambda: R.scale_total_pixels(w, h, float(megapixels))}[resize_type]()
        if size is not None:
            x = _resized(x, size[0], size[1], scale_method, crop_mode)
    return x[..., 0] if was_mask else x
