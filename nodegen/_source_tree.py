"""Mount the repository's ``nodes/`` and ``gui/`` folders as ``nodegen.nodes`` and ``nodegen.gui``.

The product card fixes the repository layout (``nodegen/``, ``nodes/``, ``gui/`` side by side), while an
installed package must not take generic top-level names such as ``nodes`` or ``gui``. The wheel maps
the two folders into the package (``[tool.setuptools.package-dir]`` in pyproject.toml); in a source
checkout (tests, ``python main.py``, a worktree) this finder does the same, for exactly those two names.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MOUNTED = ("nodes", "gui")


class _SourceTreeFinder:
    """A meta-path finder that resolves ``nodegen.nodes`` and ``nodegen.gui`` to the checkout's folders."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, fullname: str, path=None, target=None):
        parts = fullname.split(".")
        if len(parts) != 2 or parts[0] != "nodegen" or parts[1] not in MOUNTED:
            return None
        folder = self.root / parts[1]
        init = folder / "__init__.py"
        if not init.is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[str(folder)])


def install() -> None:
    """Install the finder when this package sits in a checkout beside ``nodes/`` and ``gui/``."""
    package = Path(__file__).resolve().parent
    if any((package / name).is_dir() for name in MOUNTED):
        return  # an installed wheel: the folders are inside the package already
    root = package.parent
    if not all((root / name / "__init__.py").is_file() for name in MOUNTED):
        return
    if any(isinstance(f, _SourceTreeFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _SourceTreeFinder(root))

