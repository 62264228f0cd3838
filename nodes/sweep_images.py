"""LoadSweepImages: a sweep's pictures as one IMAGE batch, with the values each was made with.

Connect it to CLIPRankImages (its ``labels`` input takes this node's ``labels``) to keep the best
seeds of a sweep inside a graph. The folder is looked up in the output folder first (where
``nodegen sweep --out`` writes by default), then where LoadImage looks for images (the input
folder, the workflow's folder, the config file's image folders; anywhere with
``--allow-any-path``).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nodegen.formats.sweep_results import MANIFEST, SweepFolderError, manifest_path, read_sweep_images
from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

NODE = "LoadSweepImages"


def find_sweep_folder(env: Any, folder: str) -> Path:
    """The sweep folder named ``folder`` (see the module doc); FileNotFoundError says where it looked."""
    if not isinstance(folder, str) or not folder.strip():
        raise ValueError(f"{NODE}: input 'folder' is empty; give a sweep output folder (its {MANIFEST})")
    name = folder.strip()
    output_dir = getattr(env, "output_dir", None)
    if output_dir is not None and not Path(name).is_absolute():
        root = Path(output_dir).resolve()
        cand = (root / name).resolve()
        if cand.is_relative_to(root) and manifest_path(cand).is_file():
            return cand
    resolve = getattr(env, "resolve_file", None)
    if resolve is None:  # a bare executor: a plain path
        if manifest_path(name).is_file():
            return Path(name)
        raise FileNotFoundError(f"{NODE}: input 'folder': no {MANIFEST} in {name!r}")
    found = resolve("image", str(Path(name) / MANIFEST))
    if found is None:
        where = env.describe_files("image") if hasattr(env, "describe_files") else ""
        raise FileNotFoundError(f"{NODE}: input 'folder': no sweep folder {name!r} with a {MANIFEST} "
                                f"(looked in the output folder {output_dir}; {where})")
    return Path(found).parent


def _fingerprint(inputs: dict, env: Any) -> Any:
    """The manifest's path, size and time: a sweep that ran on (or resumed) is read again."""
    from nodegen.models.manager import file_key

    try:
        return file_key(manifest_path(find_sweep_folder(env, inputs.get("folder"))))
    except (OSError, ValueError):
        return ("missing", inputs.get("folder"))


def load_batch(folder: Path, max_images: int = 0):
    """(IMAGE batch, entries) of the sweep in ``folder``; every picture must have the same size."""
    import torch
    from PIL import Image

    from nodegen.image.convert import pil_to_image

    entries = read_sweep_images(folder)
    if max_images:
        entries = entries[:max_images]
    if not entries:
        raise ValueError(f"{NODE}: {folder / MANIFEST} records no finished job with an image")
    images = []
    for e in entries:
        path = folder / e.file
        try:
            with Image.open(path) as img:
                images.append(pil_to_image(img))
        except OSError as err:
            raise ValueError(f"{NODE}: {path}: cannot be read ({err})") from err
        if images[-1].shape != images[0].shape:
            raise ValueError(f"{NODE}: {path} is {images[-1].shape[2]}x{images[-1].shape[1]}, "
                             f"{folder / entries[0].file} {images[0].shape[2]}x{images[0].shape[1]}: a batch needs "
                             "one size (sweep the size in separate folders, or rank with 'nodegen rank')")
    return torch.cat(images), entries


@node(NODE, category="image", fingerprint=_fingerprint,
      description="Load every picture of a sweep output folder as one batch, with the values each was made with.",
      inputs=[Input.string("folder", "", description="A sweep output folder (holding sweep.jsonl)"),
              Input.int("max_images", 0, min=0, max=65536, description="Load at most this many (0: all)")],
      outputs=[Output("images", T.IMAGE, "The sweep's pictures, in job order"),
               Output("labels", T.STRING, "One line per picture: the swept values it was made with"),
               Output("count", T.INT)],
      keywords=("sweep", "best of", "seeds", "batch", "folder"))
def load_sweep_images(ctx, folder, max_images=0):
    env = ctx.env if ctx.env is not None else SimpleNamespace(output_dir=ctx.output_dir)
    try:
        path = find_sweep_folder(env, folder)
        images, entries = load_batch(path, int(max_images))
    except SweepFolderError as e:
        raise ValueError(f"{NODE}: input 'folder': {e}") from e
    labels = [e.label() for e in entries]
    ctx.ui(text=[f"{len(entries)} picture(s) from {path}"])
    return images, "\n".join(labels), len(entries)
