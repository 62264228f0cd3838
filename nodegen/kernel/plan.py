"""Planning: the part of a workflow the requested outputs need, checked and in the order to run it.

Only that part is validated as *errors*; problems in branches nothing requested are reported as
*warnings* and do not block the run. The steps: resolve the targets, collect what they need, check
every node (:mod:`nodegen.kernel.validate`), order the needed nodes (cycles are errors).

With ``drop_invalid`` (``run --keep-going``), a target whose needed part has errors is dropped
instead of failing the plan: the plan runs the targets that are valid, lists the dropped ones in
:attr:`Plan.skipped` with the problems that stopped each, and reports those problems as warnings.
When no target is left, the plan fails as it would without the option.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from nodegen.kernel.node import NodeDef
from nodegen.kernel.problems import Problem, node_title
from nodegen.kernel.registry import NodeRegistry
from nodegen.kernel.validate import check_node


@dataclass
class Plan:
    """The validated, ordered part of a workflow that a run executes."""

    order: list[str]
    targets: list[str]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    #: Targets dropped by ``drop_invalid``: target id -> the errors in the part it needs.
    skipped: dict[str, list[Problem]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def plan(doc: dict, registry: NodeRegistry, targets: Iterable[str] | None = None,
         env: Any = None, *, drop_invalid: bool = False) -> Plan:
    """Validate and order what ``targets`` (default: every output node) need; with
    ``drop_invalid``, drop the targets whose needed part has errors (see the module doc)."""
    nodes: dict[str, dict] = doc.get("nodes", {})
    defs: dict[str, NodeDef | None] = {nid: registry.get(n.get("type")) for nid, n in nodes.items()}
    problems: list[Problem] = []
    target_ids = _targets(nodes, defs, targets, problems)
    result = _plan_targets(nodes, defs, registry, env, target_ids, problems)
    if drop_invalid and result.problems and not problems:
        result = _drop_invalid_targets(nodes, defs, registry, env, target_ids, result)
    requires = (doc.get("metadata") or {}).get("requires") or []
    if requires:
        result.problems = [_with_requirement(p, requires) for p in result.problems]
        result.warnings = [_with_requirement(p, requires) for p in result.warnings]
        result.skipped = {t: [_with_requirement(p, requires) for p in ps] for t, ps in result.skipped.items()}
    return result


def _plan_targets(nodes: dict, defs: dict, registry: NodeRegistry, env: Any, target_ids: list[str],
                  problems: list[Problem]) -> Plan:
    needed = _needed(nodes, target_ids)
    problems = list(problems)
    warnings: list[Problem] = []
    for nid, n in nodes.items():
        if nid in needed:
            problems.extend(check_node(nid, n, defs, nodes, registry, env, "error"))
        else:
            warnings.extend(check_node(nid, n, defs, nodes, registry, env, "warning"))
    order = _topological_order(nodes, needed)
    if len(order) < len(needed):
        problems.extend(_cycle_problems(nodes, defs, needed))
        order = []
    return Plan(order, target_ids, problems, warnings)


def _drop_invalid_targets(nodes: dict, defs: dict, registry: NodeRegistry, env: Any,
                          target_ids: list[str], failed: Plan) -> Plan:
    """Re-plan with only the targets whose needed part has no error; the rest are skipped."""
    bad = {p.node_id for p in failed.problems if p.node_id is not None}
    keep: list[str] = []
    skipped: dict[str, list[Problem]] = {}
    for t in target_ids:
        hit = _needed(nodes, [t]) & bad
        if hit:
            skipped[t] = [p for p in failed.problems if p.node_id in hit]
        else:
            keep.append(t)
    if not keep:
        return failed
    result = _plan_targets(nodes, defs, registry, env, keep, [])
    if result.problems:  # cannot happen (a kept target needs no bad node); fail safe
        return failed
    result.skipped = skipped
    return result


def _with_requirement(p: Problem, requires: list) -> Problem:
    """A missing file in a workflow whose metadata says it ``requires`` models the package cannot
    ship: say so, and how to bring them."""
    if p.code != "missing_file":
        return p
    needs = ", ".join(str(r) for r in requires)
    return replace(p, message=f"{p.message}. This workflow needs {needs}, which nodegen cannot ship: "
                              f"put yours in the models folder for its kind (or point --models / "
                              f"NODEGEN_MODELS at the folder that holds it) and choose it here")


def _targets(nodes: dict, defs: dict, targets: Iterable[str] | None, problems: list[Problem]) -> list[str]:
    """The node ids to run: the named targets, or every output node that is not muted."""
    if targets:
        ids = []
        for ref in targets:
            nid = _resolve_target(nodes, str(ref))
            if nid is None:
                problems.append(Problem(None, None, None, "unknown_target",
                                        f"no node with id or unique title {ref!r} to run"))
            else:
                ids.append(nid)
        return ids
    ids = [nid for nid, n in nodes.items()
           if (nd := defs[nid]) is not None and nd.output and n.get("mode", "normal") != "muted"]
    if not nodes:
        problems.append(Problem(None, None, None, "empty_workflow",
                                "the workflow has no nodes: there is nothing to run"))
    elif not ids:
        problems.append(Problem(None, None, None, "no_outputs",
                                "nothing to run: the workflow has no output node (add a Save or "
                                "Preview node, or name a target)"))
    return ids


def _resolve_target(nodes: dict, ref: str) -> str | None:
    if ref in nodes:
        return ref
    for key in ("title", "type"):
        hits = [nid for nid, n in nodes.items() if n.get(key) == ref]
        if len(hits) == 1:
            return hits[0]
    return None


def _needed(nodes: dict, target_ids: list[str]) -> set[str]:
    """The targets and everything upstream of them."""
    needed: set[str] = set()
    stack = list(target_ids)
    while stack:
        nid = stack.pop()
        if nid in needed:
            continue
        needed.add(nid)
        stack.extend(src for src in _sources(nodes[nid]) if src in nodes and src not in needed)
    return needed


def _sources(n: dict) -> Iterator[str]:
    for v in (n.get("inputs") or {}).values():
        if type(v) is dict and "from" in v and isinstance(v["from"], list) and v["from"]:
            yield str(v["from"][0])


def _topological_order(nodes: dict, needed: set[str]) -> list[str]:
    """Kahn's algorithm in document order (deterministic runs), in plain dicts (fast)."""
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


def _cycle_problems(nodes: dict, defs: dict, needed: set[str]) -> list[Problem]:
    """One problem per node of each cycle, naming all its members (networkx finds them)."""
    import networkx as nx  # only here: 0.3 s to import, and most runs have no cycle

    graph = nx.DiGraph()
    graph.add_nodes_from(needed)
    graph.add_edges_from((src, nid) for nid in needed for src in _sources(nodes[nid]) if src in needed)
    problems: list[Problem] = []
    for comp in nx.strongly_connected_components(graph):
        if len(comp) > 1 or any(graph.has_edge(c, c) for c in comp):
            members = sorted(comp, key=_id_key)
            names = ", ".join(f"{m} ({node_title(nodes[m], defs[m])})" for m in members)
            problems.extend(Problem(m, node_title(nodes[m], defs[m]), None, "cycle",
                                    f"nodes {names} form a cycle; remove one of the links between them")
                            for m in members)
    return problems


def _id_key(nid: str):
    return (0, int(nid), "") if nid.isdigit() else (1, 0, nid)
