"""Animated WEBP and PNG (APNG) files: a batch of frames written as one file, with provenance.

:func:`save_animated_webp` and :func:`save_animated_png` write a new ``prefix_NNNNN.webp`` /
``prefix_NNNNN.png`` with the next free counter (:func:`nodegen.formats.png_save.save_exclusive`:
never overwrites, never leaves a partial file). Frame timing and encoder settings follow ComfyUI's
SaveAnimatedWEBP and SaveAnimatedPNG (comfy_api ``ImageSaveHelper``): a WEBP frame lasts
``int(1000 / fps)`` milliseconds (the format counts whole milliseconds); an APNG frame lasts exactly
``1 / fps`` seconds (the format stores a fraction). WEBP's ``method`` names map to libwebp's effort
levels default 4, fastest 0, slowest 6.

Provenance: an APNG carries the same ``nodegen-workflow`` / ``nodegen-values`` text chunks as
SaveImage's PNGs (:func:`nodegen.formats.png.pnginfo`); a WEBP carries them as EXIF texts
(:mod:`nodegen.formats.webp`), where ComfyUI keeps its own.

Encoders merge a frame identical to the one before it into that frame (its duration added): a file
may hold fewer frames than the batch when consecutive images are equal, never a different animation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

#: libwebp's effort level (0-6) for ComfyUI's ``method`` names.
WEBP_METHODS = {"default": 4, "fastest": 0, "slowest": 6}
#: Largest WEBP width or height (the format stores 14 bits).
WEBP_MAX_SIZE = 16383
#: Slowest and fastest frame rates ComfyUI offers (frames per second).
MIN_FPS, MAX_FPS = 0.01, 1000.0


def webp_frame_ms(fps: float) -> int:
    """A WEBP frame's duration in milliseconds at ``fps`` (rounded down, as ComfyUI does)."""
    return int(1000.0 / fps)


def save_animated_webp(frames: Sequence, folder: str | os.PathLike, prefix: str, fps: float, *,
                       lossless: bool, quality: int, method: str,
                       workflow: dict | None = None, values: dict | None = None) -> Path:
    """Save PIL ``frames`` as one animated WEBP; ``workflow`` and ``values`` go into its EXIF."""
    from nodegen.formats.png import provenance_texts
    from nodegen.formats.png_save import save_exclusive
    from nodegen.formats.webp import exif_bytes

    width, height = frames[0].size
    if max(width, height) > WEBP_MAX_SIZE:
        raise ValueError(f"a WEBP can be at most {WEBP_MAX_SIZE} pixels wide and high; the frames are "
                         f"{width}x{height}")
    frames = [f if f.mode in ("RGB", "RGBA") else f.convert("RGB") for f in frames]
    exif = exif_bytes(provenance_texts(workflow, values, ascii_only=True))

    def write(f) -> None:
        frames[0].save(f, format="WEBP", save_all=True, append_images=frames[1:],
                       duration=webp_frame_ms(fps), exif=exif, lossless=lossless, quality=quality,
                       method=WEBP_METHODS[method])

    return save_exclusive(write, folder, prefix, ".webp")


def save_animated_png(frames: Sequence, folder: str | os.PathLike, prefix: str, fps: float, *,
                      compress_level: int, workflow: dict | None = None, values: dict | None = None) -> Path:
    """Save PIL ``frames`` as one animated PNG; ``workflow`` and ``values`` go into its text chunks."""
    from nodegen.formats.png import pnginfo
    from nodegen.formats.png_save import save_exclusive

    info = pnginfo(workflow, values)

    def write(f) -> None:
        frames[0].save(f, format="PNG", save_all=True, append_images=list(frames[1:]),
                       duration=1000.0 / fps, pnginfo=info, compress_level=compress_level)

    return save_exclusive(write, folder, prefix, ".png")
