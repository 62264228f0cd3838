"""Reading a safetensors file one tensor at a time with plain file reads (no memory map).

A memory-mapped file's pages count in the process's resident memory once touched, so a loader
that reads a whole model through ``safe_open`` holds the file's bytes in its RSS (reclaimable, but
on top of the weights) until it finishes. :class:`StreamedStateDict` reads each tensor with
``readinto`` into its own buffer instead: the file's bytes stay in the page cache, and peak memory is
the loaded weights plus one tensor. Same mapping interface as
:class:`nodegen.models.files.LazyStateDict` (``pop`` reads and forgets; ``dtype`` casts on read).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from nodegen.models.files import ModelFileError

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
          "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


class StreamedStateDict(Mapping):
    def __init__(self, path: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        self.path = Path(path)
        self.dtype = dtype
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - kept open while the loader reads
            (n,) = struct.unpack("<Q", self._file.read(8))
            header = json.loads(self._file.read(n))
        except (OSError, ValueError, struct.error) as e:
            raise ModelFileError(f"{self.path}: not a readable safetensors file ({e})") from e
        self.metadata = header.pop("__metadata__", None) or {}
        self._base = 8 + n
        self._entries: dict = header

    def __getitem__(self, key: str) -> torch.Tensor:
        entry = self._entries[key]
        dtype = DTYPES[entry["dtype"]]
        start, end = entry["data_offsets"]
        raw = torch.empty(end - start, dtype=torch.uint8)
        self._file.seek(self._base + start)
        if self._file.readinto(memoryview(raw.numpy())) != end - start:
            raise ModelFileError(f"{self.path}: truncated file (tensor {key!r})")
        t = raw.view(dtype).reshape(entry["shape"])
        if self.dtype is not None and t.is_floating_point() and t.dtype != self.dtype:
            t = t.to(self.dtype)
        return t

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def pop(self, key: str) -> torch.Tensor:
        t = self[key]
        del self._entries[key]
        return t

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(e["shape"]) for k, e in self._entries.items()}

    def close(self) -> None:
        self._file.close()


def open_streamed(path: str | os.PathLike, dtype: torch.dtype | None = None):
    """:class:`StreamedStateDict` for safetensors files; other files as :func:`open_state_dict` reads them."""
    from nodegen.models.files import _is_safetensors, open_state_dict

    p = Path(path)
    if p.is_file() and _is_safetensors(p):
        return StreamedStateDict(p, dtype)
    return open_state_dict(p, dtype)
