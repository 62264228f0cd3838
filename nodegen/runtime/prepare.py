"""Preparing a workflow for a run, once per change rather than once per run.

Preparing a document means: the file format check (JSON Schema), document and node migrations,
the ``set`` overrides, and finding recorded models by hash. Done from scratch on every
:meth:`Engine.run <nodegen.runtime.engine.Engine.run>` it cost several times the executor's own
work per node (the JSON Schema check alone ~27 us per node). :class:`Preparer` remembers, per node,
the node's JSON text and its checked, migrated copy; a run re-checks only the nodes whose text
changed (an edit touches one node: one node is checked again), and the rest of the document only
when it changed. A file source is re-read only when its size or modification time changed.

The prepared document is shared between runs (and its unchanged nodes with the caller's document)
and must not be modified: :meth:`Preparer.prepare` applies migrations to a copy of the node, and
``set`` overrides and model rewrites copy-on-write (only the touched nodes are copied). An edit the
caller makes in place between runs changes the node's text, so the node is checked again.
Documents in another format (ComfyUI, older file format versions, PNGs) take the full path each
time: they are converted first, then prepared as a whole.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodegen.formats.open import document_from_data, read_data
from nodegen.kernel.migrations import CURRENT_VERSION, migrate_nodes
from nodegen.kernel.node import NodeDef
from nodegen.kernel.registry import NodeRegistry
from nodegen.kernel.workflow import FORMAT, Workflow, WorkflowError, schema_problems


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _compact_encoder():
    """The JSON text of a value, compact (a node's fingerprint). CPython's C encoder made once:
    a third faster per node than ``json.dumps``, which builds its encoder on every call."""
    try:
        from json.encoder import c_make_encoder, encode_basestring

        chunks = c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", False, False, True)
        chunks({"probe": [1, 2.5, None, True, "x"]}, 0)
        return lambda value: "".join(chunks(value, 0))
    except Exception:  # noqa: BLE001 - no C encoder (or another signature): the portable way
        return json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":"),
                                default=_not_json).encode


_dumps = _compact_encoder()


@dataclass
class _Node:
    """One node as last prepared: its source text, the type it was checked against, the
    checked and migrated copy, and its file-format problems."""

    text: str
    nd: NodeDef | None
    node: dict
    problems: list[str]


@dataclass
class Prepared:
    """A prepared document (shared: read it, never modify it) and where it came from."""

    data: dict
    path: Path | None
    model_rewrites: list = field(default_factory=list)
    missing_models: dict = field(default_factory=dict)

    def workflow(self) -> Workflow:
        """A Workflow the caller owns (a deep copy)."""
        wf = Workflow(copy.deepcopy(self.data), self.path)
        wf.model_rewrites = self.model_rewrites  # type: ignore[attr-defined]
        return wf


class Preparer:
    """Prepares documents for one engine (its registry and model folders), remembering the last
    document's nodes so that an unchanged node is neither checked nor copied again."""

    def __init__(self, registry: NodeRegistry, env: Any = None) -> None:
        self.registry = registry
        self.env = env
        self._nodes: dict[Any, _Node] = {}
        self._rest_text: str | None = None
        self._rest: dict = {}
        self._rest_problems: list[str] = []
        self._file: tuple | None = None  # (path, mtime_ns, size), data read from it
        self._lock = threading.Lock()  # one preparation at a time (a server's threads share it)

    # -- the public step ------------------------------------------------------------------
    def prepare(self, source: Any, sets: dict | None = None) -> Prepared:
        # Building thousands of small dicts would trigger the cyclic GC's full collections,
        # whose cost grows with the heap; reference counting frees everything here.
        with self._lock:
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                return self._prepare(source, sets)
            finally:
                if gc_was_enabled:
                    gc.enable()

    def _prepare(self, source: Any, sets: dict | None) -> Prepared:
        data, path = self._decoded(source)
        doc = self._checked(data, path)
        if sets:
            doc = _with_sets(doc, sets)
        rewrites, missing = self._resolve_models(doc)
        if rewrites:
            doc = _with_rewrites(doc, rewrites)
        return Prepared(doc, path, rewrites, missing)

    # -- sources --------------------------------------------------------------------------
    def _decoded(self, source: Any) -> tuple[Any, Path | None]:
        """The decoded document data and the file it came from."""
        if isinstance(source, Workflow):
            return source.data, source.path
        if isinstance(source, dict):
            return source, None
        path = Path(source)
        try:
            st = os.stat(path)
        except OSError:
            return read_data(path), path  # raises the usual "cannot read the file" error
        key = (str(path), st.st_mtime_ns, st.st_size)
        if self._file is not None and self._file[0] == key:
            return self._file[1], path
        data = read_data(path)
        self._file = (key, data)
        return data, path

    # -- checks and migrations, memoised per node -------------------------------------------
    def _checked(self, data: Any, path: Path | None) -> dict:
        where = str(path) if path is not None else None
        if not _is_current_native(data):
            doc = document_from_data(data, where)  # converts, migrates and checks the whole
            self._migrate(doc, where)
            self._nodes, self._rest_text = {}, None
            return doc
        try:
            rest = {k: v for k, v in data.items() if k != "nodes"}
            rest_text = _dumps(rest)
            nodes = self._checked_nodes(data["nodes"], where)
        except (TypeError, ValueError) as e:
            if isinstance(e, WorkflowError):
                raise
            doc = document_from_data(data, where)  # not plain JSON data: the full path
            self._migrate(doc, where)
            self._nodes, self._rest_text = {}, None
            return doc
        if rest_text != self._rest_text:
            self._rest = copy.deepcopy(rest)
            self._rest_problems = [] if plainly_valid_rest(self._rest) else schema_problems(
                {**self._rest, "nodes": {}})
            self._rest_text = rest_text
        problems = self._rest_problems + [p for e in nodes.values() for p in e.problems]
        if problems:
            raise WorkflowError("the workflow does not match the file format", problems, path=where)
        return {**self._rest, "nodes": {nid: e.node for nid, e in nodes.items()}}

    def _checked_nodes(self, nodes: dict, where: str | None) -> dict[Any, _Node]:
        memo, fresh = self._nodes, {}
        get_def = self.registry.get
        try:
            for nid, n in nodes.items():
                text = _dumps(n)
                e = memo.get(nid)
                if (e is None or e.text != text
                        or (type(n) is dict and get_def(n.get("type")) is not e.nd)):
                    e = self._check_node(nid, n, text, where)
                fresh[nid] = e
        finally:
            self._nodes = fresh if len(fresh) == len(nodes) else {}
        return fresh

    def _check_node(self, nid: Any, n: Any, text: str, where: str | None) -> _Node:
        problems = [] if plainly_valid_node(nid, n) else schema_problems(
            {"format": FORMAT, "version": CURRENT_VERSION, "nodes": {nid: n}})
        nd = self.registry.get(n.get("type")) if isinstance(n, dict) else None
        node = n  # shared with the caller's document: nothing downstream writes into it
        if not problems and nd is not None and n.get("type_version", nd.version) != nd.version:
            node = json.loads(text)  # migrations write: a deep copy (5x faster than deepcopy)
            self._migrate({"nodes": {nid: node}}, where)
        return _Node(text, nd, node, problems)

    def _migrate(self, doc: dict, where: str | None) -> None:
        migrate_nodes(doc, self.registry)  # NodeMigrationError names the node and the versions

    # -- models by hash -------------------------------------------------------------------
    def _resolve_models(self, doc: dict) -> tuple[list, dict]:
        """A model file missing by name is found by its recorded SHA-256 in the model folders;
        those still missing are kept so validation's message can give their hash and size."""
        if not doc.get("models") or self.env is None:
            return [], {}
        from nodegen.sharing.models import resolve_models

        probe = {**doc, "models": copy.deepcopy(doc["models"]), "nodes": _Scratch(doc["nodes"])}
        rewrites, missing = resolve_models(probe, self.registry, self.env)
        doc["models"] = probe["models"]
        return rewrites, missing


_MODES = ("normal", "muted", "bypass")


def plainly_valid_node(nid: Any, n: Any) -> bool:
    """True when node ``nid`` certainly matches the file format's node schema (``$defs/node`` in
    workflow.schema.json): the common case, decided without the JSON Schema machinery (~30x
    faster). False sends the node to the JSON Schema check, which then words the problems.
    A test checks this agrees with the schema."""
    if type(nid) is not str or not 1 <= len(nid) <= 200 or type(n) is not dict:
        return False
    t = n.get("type")
    if type(t) is not str or not t:
        return False
    if "type_version" in n and (type(n["type_version"]) is not int or n["type_version"] < 0):
        return False
    if "title" in n and type(n["title"]) is not str:
        return False
    if "mode" in n and n["mode"] not in _MODES:
        return False
    if "inputs" in n and type(n["inputs"]) is not dict:
        return False
    ui = n.get("ui")
    if ui is None and "ui" not in n:
        return True
    if type(ui) is not dict:
        return False
    for key in ("pos", "size"):
        if key in ui:
            v = ui[key]
            if type(v) is not list or len(v) != 2 or not all(type(x) in (int, float) for x in v):
                return False
    if "color" in ui and type(ui["color"]) is not str:
        return False
    return "collapsed" not in ui or type(ui["collapsed"]) is bool


_METADATA_TEXT = ("name", "description", "author", "created_with")


def plainly_valid_rest(rest: dict) -> bool:
    """True when the document apart from its nodes certainly matches the schema in the common
    case (format, version, metadata of strings, ui); groups and models go to the JSON Schema."""
    for key, value in rest.items():
        if key == "metadata":
            if type(value) is not dict or any(k in value and type(value[k]) is not str for k in _METADATA_TEXT):
                return False
        elif key == "ui":
            if type(value) is not dict:
                return False
        elif key not in ("format", "version"):
            return False
    return rest.get("format") == FORMAT and type(rest.get("version")) is int and rest["version"] >= 1


def _is_current_native(data: Any) -> bool:
    return (type(data) is dict and data.get("format") == FORMAT and type(data.get("version")) is int
            and data["version"] == CURRENT_VERSION and type(data.get("nodes")) is dict)


def _with_sets(doc: dict, sets: dict) -> dict:
    """``doc`` with ``{"node.input": value}`` overrides, copying only the nodes they touch."""
    nodes = dict(doc["nodes"])
    view = Workflow({"nodes": nodes})
    for key, value in sets.items():
        try:
            if not isinstance(key, str) or "." not in key:
                raise TypeError("use set(node, input, value) or set('node.input', value)")
            ref, name = key.rsplit(".", 1)
            nid = view.resolve_node(ref)
        except (KeyError, TypeError, ValueError) as e:
            raise WorkflowError(f"cannot set {key!r}: {e.args[0] if e.args else e}") from e
        n = nodes[nid] = dict(nodes[nid])
        n["inputs"] = {**(n.get("inputs") or {}), name: value}
    return {**doc, "nodes": nodes}


def _with_rewrites(doc: dict, rewrites: list) -> dict:
    nodes = dict(doc["nodes"])
    for rw in rewrites:
        n = nodes[rw.use.node_id] = dict(nodes[rw.use.node_id])
        n["inputs"] = {**(n.get("inputs") or {}), rw.use.input: rw.new_name}
    return {**doc, "nodes": nodes}


class _Scratch(dict):
    """The nodes map given to :func:`resolve_models`, which writes its rewrites into
    ``nodes[id]["inputs"]``: each node reached for by key is a throwaway copy, so the shared
    document is left alone (:func:`_with_rewrites` applies the returned rewrites instead)."""

    def __getitem__(self, nid: Any) -> dict:
        n = dict(super().__getitem__(nid))
        n["inputs"] = dict(n.get("inputs") or {})
        return n
