"""Input files must be regular files: /dev/zero, a FIFO or a folder given where a file is read would
hang a reader or fill memory. Also bounded reads of small files (workflows)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotRegularFile(ValueError):
    """A path that exists but is not a regular file (device, FIFO, socket, folder)."""


def kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular_file(path: str | os.PathLike, what: str = "file") -> None:
    """Raise :class:`NotRegularFile` naming ``path`` unless it is a regular file (after symlinks);
    a missing path raises FileNotFoundError."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(f"{what} {os.fspath(path)!r} is not a regular file (it is {kind_of(st.st_mode)})")


def is_regular_file(path: str | os.PathLike) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def read_bounded(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (checked on the open file)."""
    path = Path(path)
    check_regular_file(path, what)
    # O_NONBLOCK: a FIFO swapped in after the check must not block the open
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{what} {os.fspath(path)!r} is not a regular file (it is {kind_of(st.st_mode)})")
        if st.st_size > limit:
            raise ValueError(f"{what} {os.fspath(path)!r} is {st.st_size} bytes, more than the limit of {limit}")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{what} {os.fspath(path)!r} is more than the limit of {limit} bytes")
    return data


def regular_file_sha256(path: str | os.PathLike, what: str = "file") -> str:
    """SHA-256 (hex) of a regular file, read in 1 MiB chunks (a FIFO or device is refused first:
    it would never end); what file-input nodes fingerprint their files by."""
    import hashlib

    check_regular_file(path, what)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
