"""Node-version migrations: a saved node made with an older version of its type is upgraded.

Policy (see docs/VERSIONING.md): a node type that changes its inputs bumps ``version`` and ships
``migrations[old_version] = fn(inputs) -> inputs`` for each step. Loading a workflow applies the
steps in order and records the new ``type_version``; a node whose saved version is newer than the
installed type is left alone and reported by validation (``newer_version``).
"""

from __future__ import annotations

from nodegen.registry import NodeRegistry


class NodeMigrationError(ValueError):
    pass


def migrate_nodes(doc: dict, registry: NodeRegistry) -> list[str]:
    """Upgrade every node in ``doc`` in place; return the ids of the nodes that changed."""
    changed = []
    for nid, n in doc.get("nodes", {}).items():
        nd = registry.get(n.get("type"))
        if nd is None:
            continue
        version = n.get("type_version", nd.version)
        if not isinstance(version, int) or version >= nd.version:
            continue
        inputs = dict(n.get("inputs") or {})
        while version < nd.version:
            step = nd.migrations.get(version)
            if step is None:
                raise NodeMigrationError(
                    f"node {nid} ({n.get('title') or nd.type}): {nd.type} version {version} cannot be "
                    f"upgraded to {nd.version} (no migration from version {version})")
            inputs = step(inputs)
            version += 1
        n["inputs"] = inputs
        n["type_version"] = nd.version
        changed.append(nid)
    return changed
