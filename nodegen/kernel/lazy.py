"""Modules imported on first use.

``torch = lazy_import("torch")`` at the top of a module names torch there without importing it: the
import happens when code first reads an attribute (``torch.zeros``). Node modules use it so that
registering and listing node types (``nodes``, ``validate``, the server's schema, the editor's
palette) imports no torch, diffusers or transformers; the first node that runs pays for them.
tests/test_lean_imports.py checks that, and tests/test_architecture.py counts a ``lazy_import`` of a
nodegen module as an import of it.

Annotations that name a lazily imported module (``-> torch.Tensor``) need
``from __future__ import annotations`` so that they are never evaluated.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name`` and imports it when an attribute is first read."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return self._module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy_import(name: str) -> Any:
    """The module ``name`` (dotted), imported when first used; typed ``Any`` like a module's attributes."""
    return LazyModule(name)
