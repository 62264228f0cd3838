"""The image size a checkpoint was made for, told from its file without loading a weight: the
model's own metadata (``nodegen.model``, for the built-in models) or its family from its tensors."""

from __future__ import annotations

import json
import struct
from functools import lru_cache
from pathlib import Path

from nodegen.models.detect import detect

#: Native image size per model family (pixels, square).
FAMILY_SIZE = {"sd1": 512, "sd2": 768, "sdxl": 1024, "sdxl_refiner": 1024, "sd3": 1024, "flux": 1024, "chroma": 1024}
#: Models that say what they are in their metadata (``nodegen.model``), with their native size.
NAMED_SIZE = {"nodegen-demo-shapes": 64}


def native_size(path: str | Path | None) -> int | None:
    """The image size a .safetensors checkpoint was made for, or None when it cannot be told."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file() or p.suffix.lower() not in (".safetensors", ".sft"):
        return None
    return _native_size(str(p.resolve()), p.stat().st_mtime_ns)


def safetensors_header(path: str | Path) -> dict:
    """The JSON header of a .safetensors file (tensor shapes and ``__metadata__``), read without
    touching the tensor data."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > 100_000_000:
            raise ValueError(f"{path}: not a safetensors file")
        return json.loads(f.read(n))


@lru_cache(maxsize=64)
def _native_size(path: str, mtime_ns: int) -> int | None:
    try:
        header = safetensors_header(path)
    except (OSError, ValueError, struct.error):
        return None
    meta = header.pop("__metadata__", None) or {}
    shapes = {k: tuple(v.get("shape", ())) for k, v in header.items() if isinstance(v, dict)}
    if meta.get("nodegen.model") in NAMED_SIZE:
        return NAMED_SIZE[meta["nodegen.model"]]
    return FAMILY_SIZE.get(detect(shapes).family or "")
