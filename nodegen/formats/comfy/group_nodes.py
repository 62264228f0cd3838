"""ComfyUI's legacy group nodes (front-ends before subgraphs): a node of type ``workflow>NAME``
(older files: ``workflow/NAME``) stands for the nodes saved in ``extra.groupNodes[NAME]``.

The definition lists its inner nodes in order (``index``) and its inner links as
``[origin index, origin slot, target index, target slot, ...]``. The instance shows, in inner-node
order, every inner input no inner link fills, every inner output no inner link reads (or that
``external`` lists), and every inner widget value, one after another in ``widgets_values``.
:func:`expand_group_nodes` replaces each instance by its inner nodes (ids ``"<instance>:<index>"``)
the same way, so the importer sees ordinary nodes.
"""

from __future__ import annotations

from typing import Any

from nodegen.formats.comfy.subgraphs import _edges, _relink

PREFIXES = ("workflow>", "workflow/")


def group_node_name(node_type: Any) -> str | None:
    if isinstance(node_type, str):
        for p in PREFIXES:
            if node_type.startswith(p):
                return node_type[len(p):]
    return None


def has_group_nodes(data: dict) -> bool:
    extra = data.get("extra")
    defs = extra.get("groupNodes") if isinstance(extra, dict) else None
    return isinstance(defs, dict) and any(
        group_node_name(n.get("type")) in defs for n in data.get("nodes") or [] if isinstance(n, dict))


def expand_group_nodes(data: dict, notes: list[str]) -> dict:
    defs = data["extra"]["groupNodes"]
    nodes = [dict(n) for n in data.get("nodes") or [] if isinstance(n, dict)]
    edges = _edges(nodes, data.get("links"))
    out_nodes: list[dict] = []
    for n in nodes:
        name = group_node_name(n.get("type"))
        if name in defs and isinstance(defs[name], dict):
            out_nodes += _expand(n, name, defs[name], nodes, edges, notes)
        else:
            out_nodes.append(n)
    out = dict(data)
    out["nodes"], out["links"] = _relink(out_nodes, edges)
    return out


def _expand(inst: dict, name: str, gdef: dict, nodes: list[dict], edges: dict, notes: list[str]) -> list[dict]:
    iid = str(inst["id"])
    inner = [dict(n) for n in gdef.get("nodes") or [] if isinstance(n, dict)]
    for i, n in enumerate(inner):
        n["id"] = f"{iid}:{n.get('index', i)}"
        if inst.get("mode") in (2, 4):
            n["mode"] = inst["mode"]
    by_index = {str(n.get("index", i)): n for i, n in enumerate(inner)}
    linked_in, linked_out = set(), set()
    for link in gdef.get("links") or []:
        if not (isinstance(link, list) and len(link) >= 4):
            continue
        o, os_, t, ts = (str(link[0]), link[1], str(link[2]), link[3])
        if o in by_index and t in by_index:
            edges[(by_index[t]["id"], ts)] = (by_index[o]["id"], os_, link[5] if len(link) > 5 else None)
            linked_in.add((t, ts))
            linked_out.add((o, os_))
    external = {(str(e[0]), e[1]) for e in gdef.get("external") or [] if isinstance(e, list) and len(e) >= 2}
    # the instance's inputs, in inner-node order: every inner input no inner link fills
    open_inputs = [(n, slot) for idx, n in by_index.items() for slot, inp in enumerate(n.get("inputs") or [])
                   if (idx, slot) not in linked_in and isinstance(inp, dict)]
    plain = [(n, s) for n, s in open_inputs if not isinstance(n["inputs"][s].get("widget"), dict)]
    for slot, inp in enumerate(inst.get("inputs") or []):
        feed = edges.pop((iid, slot), None)
        if feed is None or not isinstance(inp, dict):
            continue
        widget = inp.get("widget") if isinstance(inp.get("widget"), dict) else None
        target = next(((n, s) for n, s in open_inputs if widget and n["inputs"][s].get("name") == widget.get("name")),
                      None) if widget else (plain.pop(0) if plain else None)
        if target is not None:
            edges[(target[0]["id"], target[1])] = feed
    # the instance's outputs: every inner output no inner link reads, or that ``external`` lists
    open_outputs = [(n["id"], slot) for idx, n in by_index.items() for slot, _o in enumerate(n.get("outputs") or [])
                    if (idx, slot) not in linked_out or (idx, slot) in external]
    for key, (origin, oslot, typ) in list(edges.items()):
        if str(origin) == iid:
            if 0 <= oslot < len(open_outputs):
                edges[key] = (open_outputs[oslot][0], open_outputs[oslot][1], typ)
            else:
                del edges[key]
    _spread_widget_values(inst, inner, notes)
    notes.append(f"node {iid}: group node {name!r} expanded into its {len(inner)} node(s) (ids {iid}:<index>)")
    return inner


def _spread_widget_values(inst: dict, inner: list[dict], notes: list[str]) -> None:
    """The instance's ``widgets_values`` are the inner nodes' values one after another; where the
    count matches, each inner node takes its share (else they keep their own)."""
    wv = inst.get("widgets_values")
    counts = [len(n["widgets_values"]) if isinstance(n.get("widgets_values"), list) else 0 for n in inner]
    if not isinstance(wv, list) or not wv:
        return
    if len(wv) != sum(counts):
        notes.append(f"node {inst['id']}: group node widget values do not line up with its inner "
                     f"nodes; the inner nodes keep their saved values")
        return
    at = 0
    for n, c in zip(inner, counts, strict=True):
        if c:
            n["widgets_values"] = wv[at:at + c]
        at += c
