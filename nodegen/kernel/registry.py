"""The node registry: finds node types and holds them by type name.

Sources, in order:

1. built-in node packages (by default the ``nodes`` package shipped beside the engine; the engine
   refers to it only by name, it imports nothing of it at import time);
2. plugins: the ``nodegen.nodes`` entry-point group; an entry point may name a module or package
   (every :class:`NodeDef` defined at module level is registered, sub-modules of a package too),
   a list of NodeDefs, or a callable ``register(registry)``;
3. a user nodes folder (``NODEGEN_NODES_PATH``, several separated by ``os.pathsep``, or
   ``~/.config/nodegen/nodes``): every ``*.py`` file and every package in it.

A source that fails to import is reported in :attr:`NodeRegistry.errors` and skipped; that includes
a plugin calling ``sys.exit()`` and a plugin whose import does not finish within
``NODEGEN_PLUGIN_TIMEOUT`` seconds (default 30; it is left behind in a daemon thread). Two node
types with one name is an error that names both sources (the first one stays registered).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import pkgutil
import sys
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType

from nodegen.kernel.node import NodeDef

ENTRY_POINT_GROUP = "nodegen.nodes"
PLUGIN_TIMEOUT = 30.0


def plugin_timeout() -> float:
    try:
        return max(0.1, float(os.environ.get("NODEGEN_PLUGIN_TIMEOUT", PLUGIN_TIMEOUT)))
    except ValueError:
        return PLUGIN_TIMEOUT


class PluginFailed(Exception):
    """A plugin's import raised, exited or did not finish in time (already reported)."""


def _call_limited(fn, what: str):
    """``fn()`` in a daemon thread, waiting at most :func:`plugin_timeout` seconds. Raises
    :class:`PluginFailed` (with the message and traceback) on any exception, ``SystemExit`` included."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - SystemExit in a plugin must not end nodegen
            box["error"] = e
            box["details"] = traceback.format_exc()

    limit = plugin_timeout()
    t = threading.Thread(target=target, name="nodegen-plugin-import", daemon=True)
    t.start()
    t.join(limit)
    if t.is_alive():
        raise PluginFailed(f"{what} did not finish within {limit:g} s (an endless loop at import?); "
                           f"skipped (NODEGEN_PLUGIN_TIMEOUT sets the limit)", "")
    if "error" in box:
        e = box["error"]
        if isinstance(e, SystemExit):
            raise PluginFailed(f"{what} called sys.exit({e.code!r}) while importing", box["details"])
        raise PluginFailed(f"{what} failed: {type(e).__name__}: {e}", box["details"])
    return box.get("value")
BUILTIN_PACKAGES = ("nodegen.nodes",)


@dataclass(frozen=True)
class RegistryError:
    source: str
    message: str
    details: str = ""

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


class DuplicateNodeType(Exception):
    pass


def user_nodes_dirs() -> list[Path]:
    env = os.environ.get("NODEGEN_NODES_PATH")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return [Path(base) / "nodegen" / "nodes"]


class NodeRegistry:
    def __init__(self) -> None:
        self._types: dict[str, NodeDef] = {}
        self.errors: list[RegistryError] = []
        self._loaded_modules: set[str] = set()

    # -- registration ------------------------------------------------------------------
    def register(self, nd: NodeDef, source: str | None = None) -> None:
        if not isinstance(nd, NodeDef):
            raise TypeError(f"expected a NodeDef, got {type(nd).__name__}")
        if source is not None or not nd.source:
            nd = nd.with_source(source or getattr(nd, "__module__", None) or "?")
        old = self._types.get(nd.type)
        if old is not None:
            if old.run is nd.run:
                return  # the same definition seen twice (re-export)
            msg = (f"two node types are named {nd.type!r}: one from {old.source}, one from "
                   f"{nd.source}; the second is ignored (rename one of them)")
            self.errors.append(RegistryError(nd.source, msg))
            raise DuplicateNodeType(msg)
        self._types[nd.type] = nd

    def _register_quiet(self, nd: NodeDef, source: str) -> None:
        try:
            self.register(nd, source)
        except DuplicateNodeType:
            pass

    def register_module(self, module: ModuleType, source: str | None = None) -> int:
        """Register every NodeDef defined at module level (re-exports included once)."""
        count = 0
        src = source or module.__name__
        for name in dir(module):
            obj = getattr(module, name)
            if isinstance(obj, NodeDef):
                self._register_quiet(obj, f"{src} ({module.__name__}.{name})")
                count += 1
        nodes_list = getattr(module, "NODES", None)
        if isinstance(nodes_list, (list, tuple)):
            for obj in nodes_list:
                if isinstance(obj, NodeDef):
                    self._register_quiet(obj, f"{src} ({module.__name__})")
                    count += 1
        return count

    def load_package(self, name: str, source: str | None = None) -> None:
        """Import a module or package by name and register its node types (sub-modules too)."""
        if name in self._loaded_modules:
            return
        self._loaded_modules.add(name)
        src = source or name
        try:
            module = importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - a broken plugin must never be fatal
            self._report(src, f"cannot import {name!r}: {type(e).__name__}: {e}")
            return
        self._load_module_tree(module, src)

    def _load_module_tree(self, module: ModuleType, src: str) -> None:
        self.register_module(module, src)
        path = getattr(module, "__path__", None)
        if path is None:
            return
        for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
            if info.name.startswith("_"):
                continue
            full = f"{module.__name__}.{info.name}"
            try:
                sub = importlib.import_module(full)
            except (Exception, SystemExit) as e:  # noqa: BLE001
                self._report(f"{src} ({full})", f"cannot import {full!r}: {type(e).__name__}: {e}")
                continue
            self._load_module_tree(sub, src)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        try:
            eps = metadata.entry_points(group=group)
        except Exception as e:  # noqa: BLE001
            self._report(f"entry points {group}", str(e))
            return
        for ep in sorted(eps, key=lambda e: e.name):
            src = f"plugin {ep.name!r} ({ep.value})"
            if ep.value in self._loaded_modules:
                continue
            try:
                obj = _call_limited(ep.load, "loading")
            except PluginFailed as e:
                self._report(src, e.args[0], e.args[1])
                continue
            self._load_object(obj, src, ep.value)

    def _load_object(self, obj, src: str, name: str) -> None:
        if isinstance(obj, ModuleType):
            if obj.__name__ in self._loaded_modules:
                return
            self._loaded_modules.add(obj.__name__)
            self._load_module_tree(obj, src)
        elif isinstance(obj, NodeDef):
            self._register_quiet(obj, src)
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                if isinstance(item, NodeDef):
                    self._register_quiet(item, src)
        elif callable(obj):
            try:
                obj(self)
            except Exception as e:  # noqa: BLE001
                self._report(src, f"register() failed: {type(e).__name__}: {e}")
        else:
            self._report(src, f"entry point {name} is neither a module, NodeDefs nor a callable")

    def load_folder(self, folder: str | os.PathLike) -> None:
        """Load every ``*.py`` file and package in a user nodes folder."""
        folder = Path(folder)
        if not folder.is_dir():
            return
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith((".", "_")):
                continue
            if entry.is_file() and entry.suffix == ".py":
                init = entry
            elif entry.is_dir() and (entry / "__init__.py").exists():
                init = entry / "__init__.py"
            else:
                continue
            modname = f"nodegen_user_nodes.{entry.stem}"
            src = f"user nodes {entry}"
            try:
                spec = importlib.util.spec_from_file_location(
                    modname, init, submodule_search_locations=[str(entry)] if entry.is_dir() else None)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[modname] = module
                _call_limited(lambda s=spec, m=module: s.loader.exec_module(m), "importing")
            except PluginFailed as e:
                sys.modules.pop(modname, None)
                self._report(src, e.args[0], e.args[1])
                continue
            except Exception as e:  # noqa: BLE001
                sys.modules.pop(modname, None)
                self._report(src, f"cannot load: {type(e).__name__}: {e}")
                continue
            self._load_module_tree(module, src)

    def _report(self, source: str, message: str, details: str | None = None) -> None:
        self.errors.append(RegistryError(source, message,
                                         traceback.format_exc() if details is None else details))

    def discover(self, builtin: Iterable[str] = BUILTIN_PACKAGES, plugins: bool = True,
                 user_dirs: Iterable[str | os.PathLike] | None = None) -> NodeRegistry:
        for name in builtin:
            self.load_package(name, f"builtin {name}")
        if plugins:
            self.load_entry_points()
        for d in user_nodes_dirs() if user_dirs is None else user_dirs:
            self.load_folder(d)
        return self

    # -- lookups -----------------------------------------------------------------------
    def get(self, type_name: str | None) -> NodeDef | None:
        return self._types.get(type_name) if type_name is not None else None

    def __getitem__(self, type_name: str) -> NodeDef:
        return self._types[type_name]

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._types

    def __iter__(self):
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def names(self) -> list[str]:
        return sorted(self._types)

    def closest(self, type_name: str, n: int = 3) -> list[str]:
        names = list(self._types)
        close = difflib.get_close_matches(type_name, names, n=n, cutoff=0.5)
        lower = type_name.lower()
        for name in names:
            if lower and lower in name.lower() and name not in close:
                close.append(name)
        return close[:n]

    def categories(self) -> list[str]:
        return sorted({nd.category for nd in self._types.values()})

    def schema(self, env=None, category: str | None = None) -> dict:
        """The JSON-able schema of every node type: everything an editor needs to draw them."""
        from nodegen.kernel.types import all_types

        nodes = {
            nd.type: nd.to_json(env)
            for nd in sorted(self._types.values(), key=lambda n: n.type)
            if category is None or nd.category == category or nd.category.startswith(category + "/")
        }
        return {
            "types": {name: t.to_json() for name, t in sorted(all_types().items())},
            "nodes": nodes,
            "errors": [{"source": e.source, "message": e.message} for e in self.errors],
        }


_default: NodeRegistry | None = None


def default_registry() -> NodeRegistry:
    """The process-wide registry with built-ins, plugins and user nodes (discovered once)."""
    global _default
    if _default is None:
        _default = NodeRegistry().discover()
    return _default
