"""Work around a reference-count bug of PySide6 6.12 on Python 3.11.

With PySide6/shiboken6 6.12.0 on CPython 3.11, every call of a C++ method that returns ``void``
(``QPainter.setPen``, ``QGraphicsItem.setPos``, ``QLabel.setText``...) releases a reference to
``None`` that it never took. On Python 3.12+ ``None`` is immortal and nothing happens; on 3.11
``None``'s count falls by one per call and, a few thousand calls later (one or two repaints of a
busy canvas), reaches zero: the interpreter aborts with "Fatal Python error: none_dealloc".

:func:`apply` measures the leak with a harmless void call and, only where it exists, gives ``None``
a reserve of references far larger than any session can use (``None`` is a static object that is
never freed, so extra references cost nothing). Where the bug is absent it does nothing.
"""

from __future__ import annotations

import ctypes
import sys

RESERVE = 1 << 56
_applied = False


def leaks_none() -> bool:
    """True when a void Qt call drops a reference to None (the bug is present)."""
    if sys.version_info >= (3, 12):
        return False
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(64):
        probe.setObjectName("probe")
    return before - sys.getrefcount(None) >= 48


def apply() -> bool:
    """Install the reserve once, if needed. Returns True when it was installed."""
    global _applied
    if _applied:
        return True
    if not leaks_none():
        return False
    refcnt = ctypes.c_ssize_t.from_address(id(None))  # ob_refcnt is the first field of an object
    refcnt.value += RESERVE
    _applied = True
    return True
