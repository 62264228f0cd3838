"""Migrations, in one place: the workflow file format's versions and each node type's versions.

Document versions: ``@migration(n)`` registers the step from file format version ``n`` to ``n + 1``;
:func:`migrate_document` applies the steps in order and refuses files from a newer nodegen.

Node versions: a saved node made with an older version of its type is upgraded.

Policy (see docs/VERSIONING.md): a node type that changes its inputs bumps ``version`` and ships
``migrations[old_version] = fn(inputs) -> inputs`` for each step. Loading a workflow applies the
steps in order and records the new ``type_version``; a node whose saved version is newer than the
installed type is left alone and reported by validation (``newer_version``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodegen.kernel.registry import NodeRegistry

#: The workflow file format version this program writes.
CURRENT_VERSION = 1


class MigrationError(ValueError):
    """A document or node cannot be upgraded."""


class NodeMigrationError(MigrationError):
    """A node cannot be upgraded to its installed type version."""


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


# -- document versions --------------------------------------------------------------------------------

#: ``{from_version: fn(doc) -> doc}`` upgrading a document by one version.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}


def migration(from_version: int):
    def deco(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
        MIGRATIONS[from_version] = fn
        return fn
    return deco


@migration(0)
def _v0_to_v1(doc: dict) -> dict:
    """Version 0 (the pre-release draft): ``nodes`` was a list of ``{"id": ..., ...}`` and a link
    was a bare ``[node_id, output]`` pair. Version 1 keys nodes by id and marks links with ``from``."""
    nodes = doc.get("nodes", [])
    if isinstance(nodes, list):
        new = {}
        for n in nodes:
            n = dict(n)
            nid = str(n.pop("id"))
            new[nid] = n
        nodes = new
    for n in nodes.values():
        ins = n.get("inputs", {})
        for k, v in list(ins.items()):
            if isinstance(v, list) and len(v) == 2 and isinstance(v[0], (str, int)) and isinstance(v[1], str):
                ins[k] = {"from": [str(v[0]), v[1]]}
    doc["nodes"] = nodes
    doc["version"] = 1
    return doc


def migrate_document(doc: dict) -> dict:
    """Upgrade a document to :data:`CURRENT_VERSION`, one registered step at a time."""
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise MigrationError(f"'version' must be an integer, got {version!r}")
    if version > CURRENT_VERSION:
        raise MigrationError(
            f"this workflow was written by a newer nodegen (file format version {version}); "
            f"this program reads versions up to {CURRENT_VERSION}. Update nodegen to open it.")
    while version < CURRENT_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise MigrationError(f"no migration from file format version {version}")
        doc = step(doc)
        new_version = doc.get("version")
        if new_version == version:
            doc["version"] = version + 1
        version = doc["version"]
    return doc
