"""Image input and output: LoadImage, LoadImageMask, SaveImage, PreviewImage."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from nodegen.image.convert import check_image, image_to_pils, pil_alpha_mask, pil_to_image
from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


def _input_images(env) -> list[str]:
    return env.list_images() if env is not None and hasattr(env, "list_images") else []


def _resolve_image(ctx_or_env, name: str) -> Path:
    """The image file for ``name``: through the engine environment (input folder, working
    directory, the workflow's folder), or as a plain path without one."""
    resolve = getattr(ctx_or_env, "resolve_file", None)
    if resolve is None:
        p = Path(name).expanduser()
        if p.is_file():
            return p
        raise FileNotFoundError(f"image file {name!r} not found")
    path = resolve("image", name)
    if path is None:  # an Environment returns None; a RunContext raises with where it looked
        raise FileNotFoundError(f"image file {name!r} not found ({ctx_or_env.describe_files('image')})")
    return Path(path)


def _file_sha256(inputs: dict, env) -> str:
    from nodegen.kernel.files import regular_file_sha256

    return regular_file_sha256(_resolve_image(env, inputs.get("image")), "image file")


#: Most pixels a loaded image may have (decompression bombs); NODEGEN_MAX_IMAGE_PIXELS overrides.
MAX_IMAGE_PIXELS = 64 * 1024 * 1024


def max_image_pixels() -> int:
    try:
        return int(os.environ.get("NODEGEN_MAX_IMAGE_PIXELS", MAX_IMAGE_PIXELS))
    except ValueError:
        return MAX_IMAGE_PIXELS


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    from nodegen.kernel.files import check_regular_file

    check_regular_file(path, "image file")
    try:
        img = Image.open(path)
        w, h = img.size
        limit = max_image_pixels()
        if w * h > limit:
            raise ValueError(f"{path}: the image is {w}x{h} ({w * h / 1e6:.0f} megapixels), more than the "
                             f"limit of {limit / 1e6:.0f} megapixels (NODEGEN_MAX_IMAGE_PIXELS raises it)")
        img.load()
        return img
    except Image.DecompressionBombError as e:
        raise ValueError(f"{path}: refused as a decompression bomb ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not an image this program can read ({e})") from e


@node("LoadImage", category="image", description="Load an image file (PNG, JPEG, WebP...); "
      "its alpha channel becomes a mask (transparent = 1).",
      inputs=[Input.file("image", "image", choices=_input_images,
                         description="A file in the input folder, or a path")],
      outputs=[Output("image", T.IMAGE), Output("mask", T.MASK)], fingerprint=_file_sha256,
      keywords=("open", "read", "file"))
def load_image(ctx, image):
    path = _resolve_image(ctx, image)
    img = _open(path)
    ctx.ui(source=[str(path)])
    return {"image": pil_to_image(img), "mask": pil_alpha_mask(img)}


@node("LoadImageMask", category="image", description="Load one channel of an image file as a mask.",
      inputs=[Input.file("image", "image", choices=_input_images),
              Input.choice("channel", ["alpha", "red", "green", "blue"], "alpha")],
      outputs=[Output("mask", T.MASK)], fingerprint=_file_sha256)
def load_image_mask(ctx, image, channel):
    import numpy as np
    import torch

    img = _open(_resolve_image(ctx, image))
    if channel == "alpha":
        return pil_alpha_mask(img)
    band = {"red": "R", "green": "G", "blue": "B"}[channel]
    arr = np.asarray(img.convert("RGB").getchannel(band), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy())[None]


def _values_used(ctx, index: int) -> dict:
    """Provenance of one saved image: the literal inputs of every node this one depends on (as
    run: after overrides and seed randomisation) and the model files used with their size and
    SHA-256 (see nodegen.formats.png.values_used)."""
    from nodegen.formats.png import values_used

    return values_used(ctx.workflow or {"nodes": {}}, ctx.node_id, index, ctx.paths)


def _save(ctx, images, folder: str, prefix: str, embed: bool) -> list[str]:
    from nodegen.formats.png import pnginfo

    check_image(images, "images")
    paths = []
    pils = image_to_pils(images)
    for i, pil in enumerate(pils):
        info = pnginfo(ctx.workflow, _values_used(ctx, i)) if embed else None
        paths.append(str(_save_or_keep(ctx, pil, folder, prefix, info)))
    ctx.ui(images=pils, paths=paths)
    return paths


def _save_or_keep(ctx, pil, folder: str, prefix: str, info) -> Path:
    """Save one image; when that fails, keep it in the temporary folder and say where."""
    from nodegen.formats.png_save import save_png_exclusive

    return save_or_keep(ctx, lambda f, p: save_png_exclusive(pil, f, p, info), folder, prefix)


def save_or_keep(ctx, save: Callable[[str, str], Path], folder: str, prefix: str, what: str = "image") -> Path:
    """``save(folder, prefix)``; when that fails, ``save`` into the temporary folder and say where."""
    try:
        return save(folder, prefix)
    except (OSError, ValueError) as e:
        reason = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror else str(e)
        rescue = os.path.join(ctx.temp_dir, "unsaved")
        try:
            kept = save(rescue, "nodegen")
        except (OSError, ValueError) as e2:
            raise OSError(f"cannot save the {what} in {folder} ({reason}), nor keep it in {rescue} ({e2})") from e
        raise OSError(f"cannot save the {what} in {folder} as {prefix!r} ({reason}); the {what} was kept "
                      f"as {kept}") from e


def _check_target(prefix, env) -> str | None:
    """Planning-time check of SaveImage's target: fail before any work, not after it."""
    from nodegen.formats.png_save import check_target

    if env is None or not isinstance(prefix, str):
        return None
    return check_target(getattr(env, "output_dir", "output"), prefix)


_PREFIX = Input.string("filename_prefix", "nodegen", env_check=_check_target,
                       description="File name start; may contain sub-folders of the output folder")


def _output_folder(inputs: dict, env) -> str | None:
    """A save into another output folder is another save (each server or sweep job has a folder of
    its own, and must get its files even when an identical job ran before)."""
    return getattr(env, "output_dir", None)


@node("SaveImage", category="image", output=True, fingerprint=_output_folder,
      description="Save images as PNG files in the output folder, with the workflow embedded; "
                  "never overwrites a file.",
      inputs=[Input.link("images", T.IMAGE), _PREFIX],
      keywords=("write", "export", "png"))
def save_image(ctx, images, filename_prefix):
    _save(ctx, images, ctx.output_dir, filename_prefix, embed=True)
    return {}


@node("PreviewImage", category="image", output=True,
      description="Show images in the editor (kept in a temporary folder, not the outputs).",
      inputs=[Input.link("images", T.IMAGE)], keywords=("show", "view"))
def preview_image(ctx, images):
    _save(ctx, images, os.path.join(ctx.temp_dir, "previews"), "preview", embed=True)
    return {}
