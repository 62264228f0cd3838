"""The table of ComfyUI <-> nodegen node mappings, looked up by ComfyUI class or by our type.

The tables live in one module per node family (``map_*.py``), each defining ``MAPS``; this module
reads the modules listed in :data:`TABLE_MODULES` (the tables import only :mod:`.node_map`).
"""

from __future__ import annotations

import importlib

from nodegen.formats.comfy.node_map import (  # noqa: F401 - re-exported for the importers
    SEED_CONTROL_VALUES,
    UI_ONLY_INPUTS,
    NodeMap,
)

#: The table modules, each with ``MAPS: list[NodeMap]``.
TABLE_MODULES = (
    "map_clip",
    "map_conditioning",
    "map_core_extras",
    "map_core_gaps",
    "map_custom_sampling",
    "map_flow",
    "map_image",
    "map_ip_adapter",
    "map_loaders",
    "map_masks",
    "map_merging",
    "map_sampling",
    "map_utility",
)

_BY_COMFY: dict[str, NodeMap] = {}
_BY_OURS: dict[str, NodeMap] = {}


def _register(maps: list[NodeMap], table: str) -> None:
    for m in maps:
        if m.comfy in _BY_COMFY:
            raise ValueError(f"ComfyUI class {m.comfy!r} is mapped twice (again in {table})")
        _BY_COMFY[m.comfy] = m
        if m.export and m.ours not in _BY_OURS:
            _BY_OURS[m.ours] = m


def _load_tables() -> None:
    if _BY_COMFY:
        return
    for name in TABLE_MODULES:
        module = importlib.import_module(f"nodegen.formats.comfy.{name}")
        _register(module.MAPS, name)


def for_comfy(class_type: str) -> NodeMap | None:
    _load_tables()
    return _BY_COMFY.get(class_type)


def for_ours(type_name: str) -> NodeMap | None:
    _load_tables()
    return _BY_OURS.get(type_name)


def all_maps() -> list[NodeMap]:
    _load_tables()
    return list(_BY_COMFY.values())
