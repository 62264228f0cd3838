"""The workflow document: one JSON file that the editor and the headless runner both read and write.

::

    {
      "format": "nodegen-workflow",
      "version": 1,
      "metadata": {"name": "...", "description": "...", "author": "...", "created_with": "nodegen 0.1.0"},
      "nodes": {
        "1": {"type": "CheckpointLoader", "type_version": 1, "title": "Model",
              "inputs": {"ckpt_name": "nodegen-demo-shapes.safetensors"},
              "ui": {"pos": [0, 0], "size": [240, 120], "color": "#334", "collapsed": false}},
        "2": {"type": "CLIPTextEncode", "inputs": {"clip": {"from": ["1", "clip"]}, "text": "a red circle"}},
        ...
      },
      "groups": [{"title": "Prompt", "bounding": [x, y, w, h], "color": "#445"}],
      "models": [{"name": "...", "kind": "checkpoints", "size": 123, "sha256": "..."}],
      "ui": {...}
    }

Inputs are **named**; a link is ``{"from": [node_id, output_name]}``; any other value is a literal.
A node may carry ``"mode": "muted"`` (not run) or ``"mode": "bypass"`` (outputs pass matching inputs
through). Unknown fields anywhere are kept: ``save(load(x))`` keeps them.

The document is kept as plain JSON data in :attr:`Workflow.data`; this class adds loading
(JSON Schema check, migrations), atomic saving and convenient editing.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from nodegen.kernel import jsondoc
from nodegen.kernel.atomic import atomic_write_text
from nodegen.kernel.files import NotRegularFile, read_bounded
from nodegen.kernel.migrations import CURRENT_VERSION, MigrationError, migrate_document
from nodegen.kernel.problems import node_title

FORMAT = "nodegen-workflow"
VERSION = CURRENT_VERSION


class WorkflowError(ValueError):
    """The file is not a workflow this program can read. ``problems`` lists every issue."""

    def __init__(self, message: str, problems: list[str] | None = None, path: str | None = None):
        self.problems = problems or []
        self.path = path
        where = f"{path}: " if path else ""
        text = where + message
        if self.problems:
            text += "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


# -- links -------------------------------------------------------------------------------------

def is_link(value: Any) -> bool:
    return (type(value) is dict and len(value) == 1 and "from" in value
            and isinstance(value["from"], list) and len(value["from"]) == 2)


def link(node_id: str, output: str) -> dict:
    return {"from": [str(node_id), output]}


# -- schema ------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def json_schema() -> dict:
    text = resources.files("nodegen.kernel").joinpath("workflow.schema.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(json_schema())


def schema_problems(doc: Any) -> list[str]:
    out = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(document)"
        out.append(f"at {where}: {err.message}")
    return out


# -- the document ------------------------------------------------------------------------------

def new_document(name: str = "") -> dict:
    from nodegen.kernel.version import __version__

    return {
        "format": FORMAT,
        "version": VERSION,
        "metadata": {"name": name, "created_with": f"nodegen {__version__}"},
        "nodes": {},
        "groups": [],
        "models": [],
    }


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a workflow file: a regular file of bounded size, else :class:`WorkflowError`."""
    try:
        return read_bounded(path, jsondoc.max_bytes(), "workflow file")
    except (OSError, NotRegularFile, ValueError) as e:
        reason = (e.strerror or str(e)) if isinstance(e, OSError) else str(e)
        raise WorkflowError(f"cannot read the file: {reason}", path=_short_path(path)) from e


def read_json(path: str | os.PathLike) -> Any:
    """The decoded JSON of a workflow file, read strictly (see :mod:`nodegen.kernel.jsondoc`)."""
    try:
        return jsondoc.loads(read_bytes(path))
    except jsondoc.JsonDocError as e:
        raise WorkflowError(str(e), path=_short_path(path)) from e


def _short_path(path: str | os.PathLike) -> str:
    return jsondoc.shorten(os.fspath(path), 300)


def parse(data: Any, path: str | None = None) -> dict:
    """Check and migrate a document (already decoded JSON). Raises :class:`WorkflowError`."""
    if not isinstance(data, dict):
        raise WorkflowError(f"a workflow must be a JSON object, got {type(data).__name__}", path=path)
    try:
        jsondoc.check_value(data)
    except jsondoc.JsonDocError as e:
        raise WorkflowError(str(e), path=path) from e
    if data.get("format") != FORMAT:
        raise WorkflowError(f"not a nodegen workflow ('format' must be {FORMAT!r}); "
                            f"ComfyUI files and PNGs open through nodegen.formats.open_any", path=path)
    try:
        doc = migrate_document(copy.deepcopy(data))
    except MigrationError as e:
        raise WorkflowError(str(e), path=path) from e
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise WorkflowError(f"cannot upgrade this workflow from its older format: the document is "
                            f"malformed ({type(e).__name__}: {jsondoc.shorten(str(e))})", path=path) from e
    problems = schema_problems(doc)
    if problems:
        raise WorkflowError("the workflow does not match the file format", problems, path=path)
    return doc


class Workflow:
    """A workflow document with editing helpers. ``data`` is the JSON document itself."""

    def __init__(self, data: dict | None = None, path: str | os.PathLike | None = None) -> None:
        self.data = data if data is not None else new_document()
        self.path = Path(path) if path is not None else None

    # -- files ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> Workflow:
        """Load a nodegen workflow ``.json`` (ComfyUI files and PNGs: :func:`nodegen.formats.open_any`)."""
        path = Path(path)
        return cls(parse(read_json(path), str(path)), path)

    @classmethod
    def from_dict(cls, data: Any) -> Workflow:
        return cls(parse(data))

    @classmethod
    def from_json(cls, text: str) -> Workflow:
        try:
            data = jsondoc.loads(text)
        except jsondoc.JsonDocError as e:
            raise WorkflowError(str(e)) from e
        return cls(parse(data))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.data, indent=indent, ensure_ascii=False) + "\n"

    def save(self, path: str | os.PathLike | None = None) -> Path:
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("no path to save to")
        atomic_write_text(target, self.to_json())
        self.path = target
        return target

    def copy(self) -> Workflow:
        return Workflow(copy.deepcopy(self.data), self.path)

    # -- access -----------------------------------------------------------------------------
    @property
    def nodes(self) -> dict[str, dict]:
        return self.data.setdefault("nodes", {})

    @property
    def metadata(self) -> dict:
        return self.data.setdefault("metadata", {})

    def __iter__(self) -> Iterator[tuple[str, dict]]:
        return iter(self.nodes.items())

    def resolve_node(self, ref: str) -> str:
        """A node id from an id or a unique title (or unique type name)."""
        ref = str(ref)
        if ref in self.nodes:
            return ref
        for key in ("title", "type"):
            hits = [nid for nid, n in self.nodes.items() if n.get(key) == ref]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise KeyError(f"{len(hits)} nodes have the {key} {ref!r} (ids {', '.join(hits)}); "
                               f"use a node id")
        raise KeyError(f"no node with id, title or type {ref!r}; the nodes are {self._node_names()}")

    def _node_names(self, limit: int = 30) -> str:
        """``1 (Model), 2 (Prompt), ...``: what a NODE reference may name."""
        names = [f"{nid} ({node_title(n, None)})" for nid, n in self.nodes.items()]
        more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more if names else "(none)"

    def node(self, ref: str) -> dict:
        return self.nodes[self.resolve_node(ref)]

    def get(self, ref: str, input_name: str) -> Any:
        return self.node(ref).get("inputs", {}).get(input_name)

    def set(self, target: str, *args: Any) -> None:
        """``set("3", "seed", 5)``, or ``set("3.seed", 5)`` / ``set("Sampler.seed", 5)``
        (a node id or unique title, then the input name)."""
        if len(args) == 2:
            ref, input_name, value = target, args[0], args[1]
        elif len(args) == 1 and "." in target:
            ref, input_name = target.rsplit(".", 1)
            value = args[0]
        else:
            raise TypeError("use set(node, input, value) or set('node.input', value)")
        self.node(ref).setdefault("inputs", {})[input_name] = value

    def add_node(self, type_name: str, inputs: dict | None = None, *, id: str | None = None,
                 title: str | None = None, type_version: int | None = None, **extra: Any) -> str:
        nid = str(id) if id is not None else self.next_id()
        if nid in self.nodes:
            raise KeyError(f"node id {nid!r} already exists")
        n: dict[str, Any] = {"type": type_name}
        if type_version is not None:
            n["type_version"] = type_version
        if title:
            n["title"] = title
        n["inputs"] = dict(inputs or {})
        n.update(extra)
        self.nodes[nid] = n
        return nid

    def next_id(self) -> str:
        numeric = [int(k) for k in self.nodes if k.isdigit()]
        return str(max(numeric, default=0) + 1)

    def connect(self, src: str, output: str, dst: str, input_name: str) -> None:
        self.node(dst).setdefault("inputs", {})[input_name] = link(self.resolve_node(src), output)

    def remove_node(self, ref: str) -> None:
        nid = self.resolve_node(ref)
        del self.nodes[nid]
        for n in self.nodes.values():
            ins = n.get("inputs", {})
            for k, v in list(ins.items()):
                if is_link(v) and str(v["from"][0]) == nid:
                    del ins[k]

    def links(self) -> Iterator[tuple[str, str, str, str]]:
        """Every link as ``(src_id, output, dst_id, input)``."""
        for nid, n in self.nodes.items():
            for name, v in n.get("inputs", {}).items():
                if is_link(v):
                    yield str(v["from"][0]), v["from"][1], nid, name
