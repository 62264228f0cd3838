"""Running one built-in node type directly (no graph): its outputs as a dict by output name."""

from __future__ import annotations

from typing import Any

from nodegen.kernel.registry import default_registry

REG = default_registry()


def run(type_name: str, ctx: Any = None, **inputs) -> dict[str, Any]:
    nd = REG[type_name]
    return nd.normalize_result(nd.run(ctx, **inputs))
