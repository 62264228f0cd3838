"""Where SaveImage writes: output names checked before a run, files written whole or not at all.

* :func:`check_target` tells, before any work, whether ``prefix`` can be saved under ``folder``
  (the folder is a writable folder or can be created, the prefix stays inside it, each name part
  fits the file system's 255-byte limit).
* :func:`clean_name` replaces control and bidirectional-formatting characters (newlines, NUL,
  right-to-left overrides) with ``_``, so a file name shows what it is.
* :func:`save_png_exclusive` writes ``folder/prefix_00001.png`` with the next free counter through
  a temporary file and a hard link (:func:`nodegen.kernel.atomic.write_new_file`): never
  overwrites, and a PNG under its final name is always complete. :func:`save_exclusive` does the
  same for any file type (animated WEBP and PNG).
"""

from __future__ import annotations

import itertools
import os
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: Longest file name part (bytes) on common file systems.
NAME_MAX = 255
#: Room kept for ``_NNNNN.png`` (or ``.webp``) and for the temporary file's decorations.
_SUFFIX_ROOM = 16


class OutputNameError(ValueError):
    pass


def clean_name(text: str) -> str:
    """``text`` with control (Cc) and format (Cf: bidi overrides, zero-width) characters as ``_``."""
    return "".join("_" if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in text)


def split_prefix(folder: str | os.PathLike, prefix: str) -> tuple[Path, str]:
    """The folder and the file-name stem for ``prefix``; raises :class:`OutputNameError`."""
    if not isinstance(prefix, str):
        raise OutputNameError("the file name prefix must be text")
    prefix = clean_name(prefix)
    if not prefix or prefix.strip() in (".", "..") or prefix.endswith(("/", os.sep)):
        raise OutputNameError("the file name prefix is empty")
    if os.path.isabs(prefix) or prefix.startswith("~"):
        raise OutputNameError(f"the file name prefix {_show(prefix)} must be relative to the output folder")
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError:
        raise OutputNameError("the file name prefix holds a lone surrogate, which cannot be a file name") from None
    parts = Path(prefix).parts
    for part in parts:
        room = NAME_MAX - (_SUFFIX_ROOM if part == parts[-1] else 0)
        if len(os.fsencode(part)) > room:
            raise OutputNameError(f"the file name prefix part {_show(part)} is {len(os.fsencode(part))} bytes; "
                                  f"a file name may have at most {room} here")
    base = os.path.realpath(folder)
    head, stem = os.path.split(prefix)
    if not head:  # a plain name: the folder itself (resolved once, the common case)
        return Path(base), stem
    target_dir = os.path.realpath(os.path.join(base, head))
    if target_dir != base and not target_dir.startswith(base.rstrip(os.sep) + os.sep):
        raise OutputNameError(f"the file name prefix {_show(prefix)} leads outside the output folder {base}")
    return Path(target_dir), stem


def check_target(folder: str | os.PathLike, prefix: str) -> str | None:
    """None when ``prefix`` can be saved under ``folder``, else why not (creates nothing)."""
    try:
        target_dir, _stem = split_prefix(folder, prefix)
    except (OutputNameError, OSError) as e:
        return str(e)
    probe = target_dir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        what = "the output folder" if str(probe) == os.path.realpath(folder) else "a folder on the way"
        return f"cannot save in {target_dir}: {what} {probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"cannot save in {target_dir}: the folder {probe} is not writable"
    return None


def next_counter(folder: Path, stem: str, suffix: str = ".png") -> int:
    """One more than the highest ``stem_NNNNN.png`` (``suffix``) counter in ``folder`` (ASCII digits only)."""
    pattern = re.compile(r"_([0-9]+)" + re.escape(suffix))
    counter = 1
    try:
        names = [e.name for e in os.scandir(folder)]
    except OSError:
        return counter
    for name in names:
        if name.startswith(stem + "_"):
            m = pattern.fullmatch(name[len(stem):])
            if m is not None:
                counter = max(counter, int(m.group(1)) + 1)
    return counter


def save_png_exclusive(img, folder: str | os.PathLike, prefix: str, info=None, digits: int = 5) -> Path:
    """Save ``img`` as ``folder/prefix_00001.png`` with the next free counter; never overwrites,
    never leaves a partial PNG. ``prefix`` may contain sub-folders but must stay inside ``folder``."""
    return save_exclusive(lambda f: img.save(f, format="PNG", pnginfo=info, compress_level=4),
                          folder, prefix, ".png", digits)


def save_exclusive(write: Callable[[BinaryIO], object], folder: str | os.PathLike, prefix: str,
                   suffix: str, digits: int = 5) -> Path:
    """Write a new file ``folder/prefix_00001<suffix>`` with the next free counter through ``write(f)``;
    never overwrites, never leaves a partial file (see :func:`save_png_exclusive`)."""
    from nodegen.kernel.atomic import write_new_file

    target_dir, stem = split_prefix(folder, prefix)
    target_dir.mkdir(parents=True, exist_ok=True)
    start = next_counter(target_dir, stem, suffix)
    names = (target_dir / f"{stem}_{n:0{digits}d}{suffix}" for n in itertools.count(start))
    return write_new_file(names, write)


def _show(text: str, limit: int = 60) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"
