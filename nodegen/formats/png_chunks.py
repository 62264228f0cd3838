"""The text chunks of a PNG, read straight from its bytes without decoding a single pixel.

Reading a workflow from a PNG must not depend on its pixels: a decompression bomb (a huge image
that compresses to a few kilobytes) given as a graph would otherwise allocate gigabytes, and PIL
refuses text chunks over 64 MB (``MAX_TEXT_CHUNK``), which a large embedded workflow can exceed.
Here ``tEXt``, ``zTXt`` and ``iTXt`` chunks are parsed per the PNG specification (ISO/IEC 15948,
section 11.3.4) with an explicit bound on the decompressed size of each.
"""

from __future__ import annotations

import struct
import zlib

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Largest decompressed text chunk accepted (bytes).
MAX_TEXT = 512 << 20


class PngChunkError(ValueError):
    pass


def _inflate(data: bytes, limit: int) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise PngChunkError(f"a compressed text chunk is damaged ({e})") from e
    if len(out) > limit or d.unconsumed_tail:
        raise PngChunkError(f"a text chunk decompresses to more than {limit} bytes")
    return out


def _text_chunk(kind: bytes, body: bytes, limit: int) -> tuple[str, str] | None:
    key, sep, rest = body.partition(b"\0")
    if not sep:
        return None
    keyword = key.decode("latin-1")
    if kind == b"tEXt":
        return keyword, rest.decode("latin-1")
    if kind == b"zTXt":
        if not rest:
            return None
        return keyword, _inflate(rest[1:], limit).decode("latin-1")
    # iTXt: compression flag, method, language tag\0, translated keyword\0, text
    if len(rest) < 2:
        return None
    flag, rest = rest[0], rest[2:]
    _lang, _, rest = rest.partition(b"\0")
    _tkey, _, text = rest.partition(b"\0")
    if flag:
        text = _inflate(text, limit)
    try:
        return keyword, text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PngChunkError(f"the iTXt chunk {keyword!r} is not UTF-8 ({e})") from e


def text_chunks(data: bytes, limit: int = MAX_TEXT) -> dict[str, str]:
    """``{keyword: text}`` of every text chunk (the first of equal keywords wins)."""
    if data[:8] != PNG_MAGIC:
        raise PngChunkError("not a PNG file (wrong signature)")
    out: dict[str, str] = {}
    pos = 8
    end = len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body_start = pos + 8
        body_end = body_start + length
        if body_end + 4 > end:
            raise PngChunkError(f"the file is truncated (chunk {kind!r} runs past its end)")
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            item = _text_chunk(kind, data[body_start:body_end], limit)
            if item is not None and item[0] not in out:
                out[item[0]] = item[1]
        if kind == b"IEND":
            break
        pos = body_end + 4  # skip the CRC
    return out
