"""ComfyUI's ``.latent`` files (its SaveLatent / LoadLatent nodes): a safetensors file.

* ``latent_tensor``: the latent batch in ComfyUI's convention: the VAE's raw latents (the model
  applies its family's scale and shift itself), ``[B, C, h, w]`` float32.
* ``latent_format_version_0``: an empty tensor marking that convention. Files written before it
  existed hold SD1-scaled latents (raw x 0.18215); ComfyUI, and :func:`read_latent`, multiply
  those by ``1 / 0.18215``.
* safetensors metadata (text): ComfyUI writes ``prompt`` (its API format) and the editor's
  ``workflow``; nodegen writes its workflow and the values used (the keys of :mod:`nodegen.formats.png`)
  and, where the workflow exports, ComfyUI's ``prompt``.

:func:`write_latent_exclusive` names files as ComfyUI does, ``folder/prefix_00001_.latent`` with the
next free counter, and never overwrites one (:func:`nodegen.kernel.atomic.write_new_file`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from nodegen.formats.png_save import save_exclusive

if TYPE_CHECKING:
    import torch

TENSOR_KEY = "latent_tensor"
VERSION_KEY = "latent_format_version_0"
#: What files without :data:`VERSION_KEY` were multiplied by (SD1's scale).
OLD_FORMAT_SCALE = 0.18215
EXTENSION = ".latent"


class LatentFileError(ValueError):
    """A file that is not a readable ``.latent`` file (the message names it)."""


def latent_bytes(raw: torch.Tensor, metadata: dict[str, str] | None = None) -> bytes:
    """The bytes of a ``.latent`` file holding ``raw`` (ComfyUI's convention) in the current format."""
    import torch
    from safetensors.torch import save

    tensors = {TENSOR_KEY: raw.detach().to("cpu").contiguous(), VERSION_KEY: torch.tensor([])}
    return save(tensors, metadata=metadata or None)


def write_latent_exclusive(raw: torch.Tensor, folder: str | os.PathLike, prefix: str,
                           metadata: dict[str, str] | None = None, digits: int = 5) -> Path:
    """Write ``raw`` as ``folder/prefix_00001_.latent`` with the next free counter; never
    overwrites, never leaves a partial file. ``prefix`` may contain sub-folders but must stay
    inside ``folder`` (:class:`nodegen.formats.png_save.OutputNameError` otherwise)."""
    data = latent_bytes(raw, metadata)
    return save_exclusive(lambda f: f.write(data), folder, prefix, "_" + EXTENSION, digits)  # stem_00001_.latent


def read_latent(path: str | os.PathLike) -> tuple[torch.Tensor, dict[str, str]]:
    """The latents of a ``.latent`` file in ComfyUI's convention (float32; an old-format file's
    values times ``1 / 0.18215``, exactly as ComfyUI's LoadLatent computes them) and its metadata."""
    from safetensors import SafetensorError, safe_open

    from nodegen.kernel.files import check_regular_file

    check_regular_file(path, "latent file")
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            keys = set(f.keys())
            if TENSOR_KEY not in keys:
                found = ", ".join(sorted(keys)[:8]) or "no tensors"
                raise LatentFileError(f"{os.fspath(path)!r} is not a latent file: it holds no "
                                      f"'{TENSOR_KEY}' tensor (found {found})")
            tensor = f.get_tensor(TENSOR_KEY)
            metadata = dict(f.metadata() or {})
    except SafetensorError as e:
        raise LatentFileError(f"{os.fspath(path)!r} is not a latent file (a safetensors file): {e}") from e
    multiplier = 1.0 if VERSION_KEY in keys else 1.0 / OLD_FORMAT_SCALE
    return tensor.float() * multiplier, metadata
