"""Workflows inside WEBP files: EXIF texts written by SaveAnimatedWEBP and read by the loaders.

A WEBP holds text in its ``EXIF`` chunk, in ASCII fields. ComfyUI writes ``"prompt:<json>"`` in the
Model field (0x0110) and ``"workflow:<json>"`` in the Make field (0x010F), each further
``extra_pnginfo`` key in the field below. nodegen writes its own PNG text keys the same way:
``"nodegen-workflow:<json>"`` in 0x010F and ``"nodegen-values:<json>"`` in 0x010E (JSON with every
non-ASCII character escaped), so :mod:`nodegen.formats.png`'s readers apply unchanged.

The texts are read from the RIFF chunks (the WebP container, RFC 9649 section 2.7) without decoding
a single pixel, as the PNG reader does.
"""

from __future__ import annotations

import os
import struct

from nodegen.formats.png import PngWorkflowError, values_from_text, workflow_from_text

#: The first EXIF field used; each further text takes the field below (as ComfyUI does).
FIRST_TAG = 0x010F
#: ComfyUI's field for its API-format ``prompt``.
PROMPT_TAG = 0x0110


class WebpWorkflowError(PngWorkflowError):
    pass


def is_webp(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def exif_bytes(texts: dict[str, str]) -> bytes:
    """An EXIF block holding ``texts`` as ``"key:text"`` fields from 0x010F down."""
    from PIL import Image

    exif = Image.Exif()
    for tag, (key, text) in zip(range(FIRST_TAG, 0, -1), texts.items(), strict=False):
        value = f"{key}:{text}"
        if not value.isascii():
            raise ValueError(f"the EXIF text {key!r} must be ASCII (escape it as JSON does)")
        exif[tag] = value
    return exif.tobytes()


def exif_chunk(data: bytes, path: str | os.PathLike = "WEBP") -> bytes | None:
    """The body of the ``EXIF`` chunk of a WEBP file's bytes, or None when it has none."""
    if not is_webp(data):
        raise WebpWorkflowError(f"{path}: not a WEBP file (no RIFF/WEBP header)")
    (riff_size,) = struct.unpack("<I", data[4:8])
    end = min(len(data), 8 + riff_size)
    pos = 12
    while pos + 8 <= end:
        fourcc = data[pos:pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4:pos + 8])
        if pos + 8 + size > end:
            raise WebpWorkflowError(f"{path}: the WEBP is truncated (chunk {fourcc!r} runs past the end)")
        if fourcc == b"EXIF":
            return data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


def webp_text_bytes(data: bytes, path: str | os.PathLike = "WEBP") -> dict[str, str]:
    """The ``key:text`` fields of a WEBP's EXIF block, by key."""
    from PIL import Image

    body = exif_chunk(data, path)
    if body is None:
        return {}
    exif = Image.Exif()
    try:
        exif.load(body)
        fields = dict(exif.items())
    except Exception as e:  # Pillow's TIFF reader raises many kinds on damaged data
        raise WebpWorkflowError(f"{path}: cannot read the WEBP's EXIF block ({type(e).__name__}: {e})") from e
    texts = {}
    for _tag, value in sorted(fields.items(), reverse=True):
        if isinstance(value, str):
            key, sep, text = value.partition(":")
            if sep and key and key not in texts:
                texts[key] = text
    return texts


def webp_text(path: str | os.PathLike) -> dict[str, str]:
    from nodegen.kernel.files import read_bounded
    from nodegen.kernel.jsondoc import max_bytes

    try:
        data = read_bounded(path, max_bytes(), "WEBP file")
    except (OSError, ValueError) as e:
        raise WebpWorkflowError(f"{path}: cannot read the WEBP: {getattr(e, 'strerror', None) or e}") from e
    return webp_text_bytes(data, path)


def read_workflow_bytes(data: bytes, path: str | os.PathLike = "WEBP") -> dict:
    """The workflow embedded in a WEBP (a nodegen one, or a ComfyUI one converted on the fly)."""
    return workflow_from_text(webp_text_bytes(data, path), path, "WEBP", "EXIF text")


def read_workflow(path: str | os.PathLike) -> dict:
    return workflow_from_text(webp_text(path), path, "WEBP", "EXIF text")


def read_values(path: str | os.PathLike) -> dict | None:
    """The ``nodegen-values`` record of a WEBP saved by nodegen (None when it has none)."""
    return values_from_text(webp_text(path), path, "EXIF text", WebpWorkflowError)
