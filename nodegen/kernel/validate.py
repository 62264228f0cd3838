"""Validation and planning: every problem at once, and the order to run the needed nodes in.

Only the part of the graph the requested outputs need is validated as *errors*; problems in
branches nothing requested are reported as *warnings* and do not block the run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from nodegen.kernel.node import NodeDef
from nodegen.kernel.registry import NodeRegistry
from nodegen.kernel.types import compatible
from nodegen.kernel.workflow import is_link

#: Every problem code validation produces.
CODES = (
    "unknown_type", "newer_version", "unknown_input", "missing_input", "missing_node",
    "missing_output", "muted_source", "type_mismatch", "out_of_range", "wrong_type",
    "invalid_choice", "cycle", "missing_file", "unknown_target", "no_outputs", "invalid_link",
)


@dataclass(frozen=True)
class Problem:
    node_id: str | None
    node_title: str | None
    input: str | None
    code: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = []
        if self.node_id is not None:
            label = f"node {self.node_id}"
            if self.node_title:
                label += f" ({self.node_title})"
            where.append(label)
        if self.input:
            where.append(f"input '{self.input}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message} [{self.code}]" if prefix else f"{self.message} [{self.code}]"

    def to_json(self) -> dict:
        return {"node_id": self.node_id, "node_title": self.node_title, "input": self.input,
                "code": self.code, "message": self.message, "severity": self.severity}


class ValidationError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("the workflow is invalid:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass
class Plan:
    """The validated, ordered part of a workflow that a run executes."""

    order: list[str]
    targets: list[str]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def node_title(n: dict, nd: NodeDef | None) -> str:
    return n.get("title") or (nd.title if nd else n.get("type", "?"))


def _resolve_target(nodes: dict, ref: str) -> str | None:
    if ref in nodes:
        return ref
    for key in ("title", "type"):
        hits = [nid for nid, n in nodes.items() if n.get(key) == ref]
        if len(hits) == 1:
            return hits[0]
    return None


def plan(doc: dict, registry: NodeRegistry, targets: Iterable[str] | None = None,
         env: Any = None) -> Plan:
    nodes: dict[str, dict] = doc.get("nodes", {})
    problems: list[Problem] = []
    defs: dict[str, NodeDef | None] = {nid: registry.get(n.get("type")) for nid, n in nodes.items()}

    # 1. targets
    target_ids: list[str] = []
    if targets:
        for ref in targets:
            nid = _resolve_target(nodes, str(ref))
            if nid is None:
                problems.append(Problem(None, None, None, "unknown_target",
                                        f"no node with id or unique title {ref!r} to run"))
            else:
                target_ids.append(nid)
    else:
        target_ids = [nid for nid, n in nodes.items()
                      if (nd := defs[nid]) is not None and nd.output and n.get("mode", "normal") != "muted"]
        if not target_ids and nodes:
            problems.append(Problem(None, None, None, "no_outputs",
                                    "nothing to run: the workflow has no output node (add a Save or "
                                    "Preview node, or name a target)"))

    # 2. the needed part: targets and everything upstream of them
    needed: set[str] = set()
    stack = list(target_ids)
    while stack:
        nid = stack.pop()
        if nid in needed:
            continue
        needed.add(nid)
        for v in nodes[nid].get("inputs", {}).values():
            if is_link(v):
                src = str(v["from"][0])
                if src in nodes and src not in needed:
                    stack.append(src)

    # 3. per-node checks (errors where needed, warnings elsewhere)
    warnings: list[Problem] = []
    for nid, n in nodes.items():
        out = problems if nid in needed else warnings
        sev = "error" if nid in needed else "warning"
        _check_node(nid, n, defs, nodes, registry, env, out, sev)

    # 4. order (cycles are errors): Kahn's algorithm in document order, in plain dicts (fast);
    # networkx names the nodes of each cycle when there is one.
    order = _topological_order(nodes, needed)
    if len(order) < len(needed):
        graph = nx.DiGraph()
        graph.add_nodes_from(needed)
        graph.add_edges_from((src, nid) for nid in needed for src in _sources(nodes[nid]) if src in needed)
        for comp in nx.strongly_connected_components(graph):
            if len(comp) > 1 or any(graph.has_edge(c, c) for c in comp):
                members = sorted(comp, key=_id_key)
                names = ", ".join(f"{m} ({node_title(nodes[m], defs[m])})" for m in members)
                for m in members:
                    problems.append(Problem(m, node_title(nodes[m], defs[m]), None, "cycle",
                                            f"nodes {names} form a cycle; remove one of the links "
                                            f"between them"))
        order = []
    return Plan(order, target_ids, problems, warnings)


def _sources(n: dict):
    for v in (n.get("inputs") or {}).values():
        if type(v) is dict and "from" in v and isinstance(v["from"], list) and v["from"]:
            yield str(v["from"][0])


def _topological_order(nodes: dict, needed: set[str]) -> list[str]:
    indeg: dict[str, int] = {}
    children: dict[str, list[str]] = {}
    for nid in nodes:  # document order keeps runs deterministic
        if nid not in needed:
            continue
        count = 0
        for src in _sources(nodes[nid]):
            if src in needed:
                count += 1
                children.setdefault(src, []).append(nid)
        indeg[nid] = count
    ready = [nid for nid, d in indeg.items() if d == 0]
    ready.reverse()
    order: list[str] = []
    while ready:
        nid = ready.pop()
        order.append(nid)
        kids = children.get(nid)
        if kids:
            for child in reversed(kids):
                indeg[child] -= 1
                if indeg[child] == 0:
                    ready.append(child)
    return order


def _id_key(nid: str):
    return (0, int(nid), "") if nid.isdigit() else (1, 0, nid)


def _check_node(nid: str, n: dict, defs: dict, nodes: dict, registry: NodeRegistry, env: Any,
                out: list[Problem], sev: str) -> None:
    nd = defs[nid]
    title = node_title(n, nd)
    tname = n.get("type")
    if nd is None:
        close = registry.closest(str(tname))
        hint = f" Did you mean {', '.join(close)}?" if close else " Install the plugin that provides it."
        msg = f"unknown node type {tname!r}.{hint}"
        if n.get("missing"):
            msg = f"missing node type {tname!r} (kept from an imported workflow).{hint}"
        out.append(Problem(nid, title, None, "unknown_type", msg, sev))
        return
    tv = n.get("type_version", nd.version)
    if isinstance(tv, int) and tv > nd.version:
        out.append(Problem(nid, title, None, "newer_version",
                           f"made with version {tv} of {tname}; this nodegen has version "
                           f"{nd.version}. Update nodegen (or the plugin that provides it).", sev))
    inputs: dict = n.get("inputs", {}) or {}
    # A bypassed node does not run: only its links matter (its outputs pass inputs through).
    bypassed = n.get("mode") == "bypass"
    for name, value in inputs.items():
        spec = nd.input(name)
        if spec is None:
            close = difflib.get_close_matches(name, nd.input_names, n=2)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else (
                f"; {tname} has inputs {', '.join(nd.input_names) or '(none)'}")
            out.append(Problem(nid, title, name, "unknown_input",
                               f"{tname} has no input {name!r}{hint}", sev))
            continue
        if type(value) is dict and "from" in value:
            if not is_link(value) or not all(isinstance(x, str) for x in value["from"]):
                out.append(Problem(nid, title, name, "invalid_link",
                                   'a link must be {"from": [node_id, output_name]} with two strings',
                                   sev))
                continue
            src_id, out_name = value["from"]
            src = nodes.get(src_id)
            if src is None:
                out.append(Problem(nid, title, name, "missing_node",
                                   f"linked to node {src_id!r}, which does not exist; reconnect it", sev))
                continue
            src_def = defs[src_id]
            if src.get("mode") == "muted":
                out.append(Problem(nid, title, name, "muted_source",
                                   f"linked to node {src_id} ({node_title(src, src_def)}), which is "
                                   f"muted; unmute it or disconnect the input", sev))
            if src_def is None:
                continue  # its unknown type is reported on that node
            ospec = src_def.output_spec(out_name)
            if ospec is None:
                outs = ", ".join(src_def.output_names) or "(none)"
                out.append(Problem(nid, title, name, "missing_output",
                                   f"node {src_id} ({node_title(src, src_def)}) has no output "
                                   f"{out_name!r}; its outputs are {outs}", sev))
                continue
            if not compatible(ospec.type, spec.type):
                out.append(Problem(nid, title, name, "type_mismatch",
                                   f"expects {spec.type.name} but is linked to {ospec.type.name} "
                                   f"output {out_name!r} of node {src_id} ({node_title(src, src_def)})",
                                   sev))
            continue
        if bypassed:
            continue
        if not spec.is_literal:
            out.append(Problem(nid, title, name, "wrong_type",
                               f"needs a link from a {spec.type.name} output, not a value", sev))
            continue
        if value is None and spec.optional:
            continue
        bad = spec.check_value(value, env)
        if bad is not None:
            out.append(Problem(nid, title, name, bad[0], bad[1], sev))
            continue
        if spec.widget == "file" and env is not None and (value or not spec.optional):
            if env.resolve_file(spec.file_kind, value) is None:
                out.append(Problem(nid, title, name, "missing_file",
                                   f"file {value!r} not found ("
                                   f"{env.describe_missing(spec.file_kind, value) if hasattr(env, 'describe_missing') else env.describe_files(spec.file_kind)})",
                                   sev))
    for spec in () if bypassed else nd.inputs:
        if spec.required and spec.name not in inputs:
            what = f"a link from a {spec.type.name} output" if not spec.is_literal else "a value"
            out.append(Problem(nid, title, spec.name, "missing_input",
                               f"required input {spec.name!r} is not set; give it {what}", sev))
