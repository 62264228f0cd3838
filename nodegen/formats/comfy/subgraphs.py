"""ComfyUI subgraphs (the editor format since front-end 1.24): ``definitions.subgraphs`` holds each
subgraph's own nodes and links; a node whose ``type`` is a subgraph's id is an instance of it.

We have no subgraph node, so :func:`flatten_subgraphs` expands every instance in place, as ComfyUI
itself does before it runs a workflow: the inner nodes get ids ``"<instance>:<inner>"`` (ComfyUI's
execution ids), links from the subgraph's input node (id -10) are re-pointed at what feeds the
instance, and links into its output node (id -20) become links from the inner node that feeds
that output. Nested subgraphs are expanded the same way, outermost first.

A subgraph input that reaches an inner widget and is not linked on the instance takes the value
the instance shows for it (its ``widgets_values``, or the newer ``proxyWidgets`` list); the value is
handed to the importer as ``_widget_overrides`` on the inner node. A muted or bypassed instance
mutes or bypasses every node inside it. Each instance becomes a group titled with its name.
"""

from __future__ import annotations

from typing import Any

#: The ids ComfyUI gives a subgraph's input and output nodes.
INPUT_NODE, OUTPUT_NODE = -10, -20
MAX_DEPTH = 16

Edge = tuple[Any, int, Any]  # (origin node id, origin slot, type)


def has_subgraphs(data: dict) -> bool:
    defs = data.get("definitions")
    return isinstance(defs, dict) and bool(defs.get("subgraphs"))


def flatten_subgraphs(data: dict, notes: list[str]) -> dict:
    """A copy of the UI-format ``data`` with no subgraph instances left (see the module doc)."""
    defs = {sg["id"]: sg for sg in (data.get("definitions") or {}).get("subgraphs") or []
            if isinstance(sg, dict) and isinstance(sg.get("id"), str)}
    if not defs:
        return data
    nodes = [dict(n) for n in data.get("nodes") or [] if isinstance(n, dict)]
    edges = _edges(nodes, data.get("links"))
    groups = list(data.get("groups") or [])
    for _ in range(MAX_DEPTH):
        instances = [n for n in nodes if n.get("type") in defs]
        if not instances:
            break
        for inst in instances:
            nodes, edges = _expand(inst, defs[inst["type"]], nodes, edges, groups, notes)
    else:
        notes.append(f"subgraphs nested deeper than {MAX_DEPTH} levels were not expanded")
    out = {k: v for k, v in data.items() if k not in ("nodes", "links", "groups", "definitions")}
    out["nodes"], out["links"] = _relink(nodes, edges)
    out["groups"] = groups
    return out


def _link_rows(links: Any) -> dict[Any, tuple[Any, int, Any, int, Any]]:
    """Link id -> (origin, origin slot, target, target slot, type), from arrays or objects."""
    rows: dict[Any, tuple[Any, int, Any, int, Any]] = {}
    for link in links or []:
        if isinstance(link, list) and len(link) >= 5:
            rows[link[0]] = (link[1], link[2], link[3], link[4], link[5] if len(link) > 5 else None)
        elif isinstance(link, dict) and "id" in link:
            rows[link["id"]] = (link.get("origin_id"), link.get("origin_slot"), link.get("target_id"),
                                link.get("target_slot"), link.get("type"))
    return rows


def _edges(nodes: list[dict], links: Any) -> dict[tuple[str, int], Edge]:
    """(target id, input slot) -> where it reads from, for the nodes' linked inputs."""
    rows = _link_rows(links)
    edges: dict[tuple[str, int], Edge] = {}
    for n in nodes:
        for slot, inp in enumerate(n.get("inputs") or []):
            row = rows.get(inp.get("link")) if isinstance(inp, dict) else None
            if row is not None and row[0] is not None and isinstance(row[1], int):
                edges[(str(n["id"]), slot)] = (row[0], row[1], row[4])
    return edges


def _expand(inst: dict, sg: dict, nodes: list[dict], edges: dict, groups: list, notes: list[str]):
    iid = str(inst["id"])
    name = sg.get("name") or inst["type"]
    inner = [dict(n) for n in sg.get("nodes") or [] if isinstance(n, dict) and "id" in n]
    _place(inner, inst)
    rows = _link_rows(sg.get("links"))
    inner_edges = _edges(inner, sg.get("links"))
    widget_values = _instance_widget_values(inst, sg)
    names = [sgi.get("name") if isinstance(sgi, dict) else None for sgi in sg.get("inputs") or []]
    for name_, value in (inst.get("_widget_overrides") or {}).items():  # from an outer subgraph
        if name_ in names:
            widget_values[names.index(name_)] = value

    def new_id(inner_id: Any) -> str:
        return f"{iid}:{inner_id}"

    def outer_feed(slot: int) -> Edge | None:
        return edges.get((iid, slot))

    out_nodes = [n for n in nodes if n is not inst]
    out_edges = {k: v for k, v in edges.items() if k[0] != iid}
    for n in inner:
        old = str(n["id"])
        n["id"] = new_id(n["id"])
        if inst.get("mode") in (2, 4):
            n["mode"] = inst["mode"]
        overrides = dict(n.get("_widget_overrides") or {})
        for slot, inp in enumerate(n.get("inputs") or []):
            edge = inner_edges.get((old, slot))
            if edge is None:
                continue
            origin, oslot, typ = edge
            if origin == INPUT_NODE:
                feed = outer_feed(oslot)
                if feed is not None:
                    out_edges[(n["id"], slot)] = feed
                elif oslot in widget_values:  # also a nested instance's promoted widget
                    widget = inp.get("widget") if isinstance(inp.get("widget"), dict) else {}
                    overrides[widget.get("name") or inp.get("name")] = widget_values[oslot]
            else:
                out_edges[(n["id"], slot)] = (new_id(origin), oslot, typ)
        for (pid, widget), value in _proxy_values(inst).items():
            if pid == old:
                overrides[widget] = value
        if overrides:
            n["_widget_overrides"] = overrides
        out_nodes.append(n)
    # consumers of the instance's outputs now read from the inner node feeding that output
    feeds_out = {row[3]: row for row in rows.values() if row[2] == OUTPUT_NODE}
    for key, (origin, oslot, typ) in list(out_edges.items()):
        if str(origin) != iid:
            continue
        row = feeds_out.get(oslot)
        if row is None:
            del out_edges[key]
            notes.append(f"node {key[0]}: subgraph {name!r} (node {iid}) has nothing on output {oslot}")
        elif row[0] == INPUT_NODE:  # an input passed straight through
            feed = outer_feed(row[1])
            if feed is None:
                del out_edges[key]
            else:
                out_edges[key] = feed
        else:
            out_edges[key] = (new_id(row[0]), row[1], typ)
    groups.append(_group(inst, name, inner))
    notes.append(f"node {iid}: subgraph {name!r} expanded into its {len(inner)} node(s) "
                 f"(ids {iid}:<id>)")
    return out_nodes, out_edges


def _instance_widget_values(inst: dict, sg: dict) -> dict[int, Any]:
    """Subgraph input slot -> the value the instance shows for it (older front-ends save one
    value per widget input of the instance, in slot order)."""
    wv = inst.get("widgets_values")
    if not isinstance(wv, list) or not wv or _proxy_list(inst):
        return {}
    slots = [i for i, inp in enumerate(inst.get("inputs") or [])
             if isinstance(inp, dict) and isinstance(inp.get("widget"), dict)]
    if len(slots) != len(wv):
        # no per-input record: take the subgraph inputs whose inner target is a widget, in order
        slots = [i for i, sgi in enumerate(sg.get("inputs") or []) if sgi.get("type") in
                 ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO") or isinstance(sgi.get("type"), list)]
    return dict(zip(slots, wv, strict=False)) if len(slots) == len(wv) else {}


def _proxy_list(inst: dict) -> list:
    props = inst.get("properties")
    proxies = props.get("proxyWidgets") if isinstance(props, dict) else None
    return proxies if isinstance(proxies, list) else []


def _proxy_values(inst: dict) -> dict[tuple[str, str], Any]:
    """Newer front-ends list the promoted widgets as ``[inner id, widget]``; where the instance
    also saved values for them, those values win over the inner nodes' own."""
    proxies = _proxy_list(inst)
    wv = inst.get("widgets_values")
    if not proxies or not isinstance(wv, list) or len(wv) != len(proxies):
        return {}
    return {(str(p[0]), str(p[1])): v for p, v in zip(proxies, wv, strict=True)
            if isinstance(p, list) and len(p) == 2 and p[1] != "control_after_generate"}


def _xy(n: dict) -> list[float] | None:
    pos = n.get("pos")
    if isinstance(pos, dict):
        pos = [pos.get("0"), pos.get("1")]
    if isinstance(pos, list) and len(pos) >= 2 and all(isinstance(v, (int, float)) for v in pos[:2]):
        return [pos[0], pos[1]]
    return None


def _place(inner: list[dict], inst: dict) -> None:
    """Move the inner nodes (laid out in the subgraph's own canvas) to where the instance was."""
    at = _xy(inst)
    spots = [p for n in inner if (p := _xy(n))]
    if at is None or not spots:
        return
    dx, dy = at[0] - min(p[0] for p in spots), at[1] - min(p[1] for p in spots)
    for n in inner:
        p = _xy(n)
        if p:
            n["pos"] = [p[0] + dx, p[1] + dy]


def _group(inst: dict, name: str, inner: list[dict]) -> dict:
    spots = [p for n in inner if (p := _xy(n))]
    xs, ys = [p[0] for p in spots], [p[1] for p in spots]
    box = [min(xs) - 20, min(ys) - 60, max(xs) - min(xs) + 360, max(ys) - min(ys) + 320] if xs else [0, 0, 400, 300]
    return {"title": f"{name} (subgraph {inst['id']})", "bounding": box}


def _relink(nodes: list[dict], edges: dict[tuple[str, int], Edge]) -> tuple[list[dict], list[list]]:
    """The nodes with fresh link ids on their inputs, and the matching ``links`` array."""
    links: list[list] = []
    out = []
    for n in nodes:
        n = dict(n)
        inputs = []
        for slot, inp in enumerate(n.get("inputs") or []):
            if not isinstance(inp, dict):
                inputs.append(inp)
                continue
            inp = dict(inp)
            edge = edges.get((str(n["id"]), slot))
            if edge is None:
                inp["link"] = None
            else:
                lid = len(links) + 1
                links.append([lid, edge[0], edge[1], n["id"], slot, edge[2]])
                inp["link"] = lid
            inputs.append(inp)
        if "inputs" in n:
            n["inputs"] = inputs
        out.append(n)
    return out, links
