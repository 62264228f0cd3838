"""Animations: SaveAnimatedWEBP and SaveAnimatedPNG, ComfyUI's core nodes (comfy_extras/nodes_images.py)
with their inputs, widget order and defaults. Each saves a batch of images as the frames of one file
in the output folder the way SaveImage saves PNGs: the next free number (never an overwrite), written
whole or not at all, the workflow and the values used embedded, the file listed among the run's
outputs and the frames shown in the editor."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

from nodegen.formats.animation import MAX_FPS, MIN_FPS, WEBP_MAX_SIZE, WEBP_METHODS
from nodegen.kernel import types as T
from nodegen.kernel.node import Input, node

from .image_io import _PREFIX, _output_folder, _values_used, save_or_keep

_IMAGES = Input.link("images", T.IMAGE, description="The frames, in order (the batch)")
_FPS = Input.float("fps", 6.0, min=MIN_FPS, max=MAX_FPS, step=0.01, description="Frames per second")


def _frames(images, fps) -> list:
    """The batch as PIL frames, after checking what validation cannot see (linked values)."""
    from nodegen.image.convert import check_image, image_to_pils

    check_image(images, "images")
    if images.shape[0] == 0:
        raise ValueError("input 'images' holds no frames (an empty batch)")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) \
            or not MIN_FPS <= fps <= MAX_FPS:
        raise ValueError(f"input 'fps' must be between {MIN_FPS} and {MAX_FPS:g} frames per second, got {fps!r}")
    return image_to_pils(images)


def _save(ctx, frames: list, filename_prefix: str, write) -> None:
    """``write(frames, folder, prefix, workflow=, values=)`` into the output folder (or, failing that,
    the temporary folder, saying where); the file is listed and its frames shown in the editor."""
    values = {**_values_used(ctx, 0), "batch_index": None, "frames": len(frames)}  # the whole batch

    def save(folder: str, prefix: str) -> Path:
        return write(frames, folder, prefix, workflow=ctx.workflow, values=values)

    path = save_or_keep(ctx, save, ctx.output_dir, filename_prefix, "animation")
    ctx.ui(images=frames, paths=[str(path)])


@node("SaveAnimatedWEBP", category="image/animation", output=True, fingerprint=_output_folder,
      description="Save images as the frames of one animated WEBP in the output folder, with the "
                  "workflow embedded; never overwrites a file.",
      inputs=[_IMAGES, _PREFIX, _FPS,
              Input.bool("lossless", True, description="Lossless (quality then sets the compression effort)"),
              Input.int("quality", 80, min=0, max=100, description="Lossy quality, 0-100"),
              Input.choice("method", list(WEBP_METHODS), description="Encoder effort: slower makes smaller files")],
      keywords=("animation", "animated", "webp", "gif", "video", "frames", "export"))
def save_animated_webp(ctx, images, filename_prefix, fps, lossless, quality, method):
    from nodegen.formats.animation import save_animated_webp as write

    if method not in WEBP_METHODS:
        raise ValueError(f"input 'method' must be one of {', '.join(WEBP_METHODS)}, got {method!r}")
    frames = _frames(images, fps)
    width, height = frames[0].size
    if max(width, height) > WEBP_MAX_SIZE:
        raise ValueError(f"input 'images' is {width}x{height}; a WEBP can be at most {WEBP_MAX_SIZE} pixels wide "
                         f"and high (SaveAnimatedPNG has no such limit)")
    _save(ctx, frames, filename_prefix, partial(write, fps=fps, lossless=bool(lossless), quality=int(quality),
                                                method=method))
    return {}


@node("SaveAnimatedPNG", category="image/animation", output=True, fingerprint=_output_folder,
      description="Save images as the frames of one animated PNG (APNG) in the output folder, with the "
                  "workflow embedded; never overwrites a file.",
      inputs=[_IMAGES, _PREFIX, _FPS,
              Input.int("compress_level", 4, min=0, max=9, description="zlib level: 0 none, 9 smallest")],
      keywords=("animation", "animated", "apng", "png", "gif", "video", "frames", "export"))
def save_animated_png(ctx, images, filename_prefix, fps, compress_level):
    from nodegen.formats.animation import save_animated_png as write

    _save(ctx, _frames(images, fps), filename_prefix, partial(write, fps=fps, compress_level=int(compress_level)))
    return {}
