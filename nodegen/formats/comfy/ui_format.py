"""ComfyUI's editor ("workflow") format: ``nodes`` with positional ``widgets_values``, ``links``,
``groups``.

What needs care, and where it is handled:

* widget values are positional: :func:`widget_values` walks the map's widget order, skipping the
  "control after generate" value ComfyUI stores after seed widgets (and UI-only widgets);
* a widget converted to an input keeps its (stale) value in ``widgets_values``; the link wins;
* ``PrimitiveNode`` is an editor-only node: it becomes our Int/Seed/Float/String/Boolean node,
  or, for a choice (COMBO) value, its value is written into the inputs it feeds;
* Reroute and Note nodes map to ours; mode 2 (never) is our "muted", mode 4 is "bypass".
"""

from __future__ import annotations

from typing import Any

from nodegen.formats.comfy.builder import Builder, ComfyImportError
from nodegen.formats.comfy.group_nodes import expand_group_nodes, has_group_nodes
from nodegen.formats.comfy.mapping import SEED_CONTROL_VALUES, NodeMap, for_comfy
from nodegen.formats.comfy.subgraphs import flatten_subgraphs, has_subgraphs

MODES = {2: "muted", 4: "bypass"}
INT_MAX = 2**63 - 1


def looks_like_ui(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def _pair(value: Any) -> list[float] | None:
    if isinstance(value, dict):
        value = [value.get("0"), value.get("1")]
    if isinstance(value, (list, tuple)) and len(value) >= 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[:2]):
        return [value[0], value[1]]
    return None


def _links_table(data: dict) -> dict[int, tuple[str, int]]:
    table: dict[int, tuple[str, int]] = {}
    for link in data.get("links") or []:
        if isinstance(link, list) and len(link) >= 5:
            lid, origin, oslot = link[0], link[1], link[2]
        elif isinstance(link, dict):
            lid, origin, oslot = link.get("id"), link.get("origin_id"), link.get("origin_slot")
        else:
            continue
        if lid is not None and origin is not None and isinstance(oslot, int):
            table[lid] = (str(origin), oslot)
    return table


def widget_values(m: NodeMap, wv: Any, where: str, builder: Builder) -> tuple[dict, dict]:
    """Named values from ``widgets_values``; also the seed controls ``{widget: value}``."""
    values: dict[str, Any] = {}
    controls: dict[str, Any] = {}
    if wv is None:
        return values, controls
    if isinstance(wv, dict):  # newer front-end nodes save widget values by name
        names = [w for w in m.widgets if w]
        return {k: v for k, v in wv.items() if k in names}, controls
    if not isinstance(wv, list):
        builder.note(f"{where}: 'widgets_values' is neither a list nor an object; ignored")
        return values, controls
    i = 0
    widgets = m.widgets_for(wv)
    for w in widgets:
        if i >= len(wv):
            missing = [x for x in widgets[widgets.index(w):] if x]
            if missing:
                builder.note(f"{where}: no saved value for {', '.join(missing)}; defaults apply")
            break
        if w is not None:
            values[w] = wv[i]
        i += 1
        if w in m.seeds and i < len(wv) and (
                isinstance(wv[i], bool) or (isinstance(wv[i], str) and wv[i] in SEED_CONTROL_VALUES)):
            # old files wrote a boolean: true meant "randomize"
            controls[w] = wv[i] if isinstance(wv[i], str) else ("randomize" if wv[i] else "fixed")
            i += 1
    if i < len(wv):
        builder.note(f"{where}: {len(wv) - i} extra widget value(s) {wv[i:]!r} not understood; ignored")
    return values, controls


def _ui(n: dict) -> dict:
    ui: dict[str, Any] = {}
    pos, size = _pair(n.get("pos")), _pair(n.get("size"))
    if pos:
        ui["pos"] = pos
    if size:
        ui["size"] = size
    if isinstance(n.get("color"), str):
        ui["color"] = n["color"]
    if isinstance(n.get("bgcolor"), str):
        ui["bgcolor"] = n["bgcolor"]
    if isinstance(n.get("flags"), dict) and n["flags"].get("collapsed"):
        ui["collapsed"] = True
    return ui


def _input_links(n: dict, links: dict) -> list[tuple[str, int, tuple[str, int]]]:
    """``(input_name, slot, (src, src_slot))`` for each linked input of a UI node."""
    out = []
    for slot, inp in enumerate(n.get("inputs") or []):
        if not isinstance(inp, dict) or inp.get("link") is None:
            continue
        target = links.get(inp["link"])
        if target is None:
            continue
        widget = inp.get("widget")
        name = widget.get("name") if isinstance(widget, dict) and widget.get("name") else inp.get("name", "")
        out.append((name, slot, target))
    return out


def _primitive_plans(nodes: list[dict], links: dict, builder: Builder) -> tuple[dict, dict]:
    """Decide what each PrimitiveNode becomes: ``(as_nodes, inline)`` where ``as_nodes`` maps its
    id to ``(our_type, input, output, value)`` and ``inline`` maps ``(target_id, input)`` to a value."""
    by_id = {str(n.get("id")): n for n in nodes if isinstance(n, dict)}
    targets: dict[str, list[tuple[str, str]]] = {}
    for n in nodes:
        for name, _slot, (src, _s) in _input_links(n, links):
            if by_id.get(src, {}).get("type") == "PrimitiveNode":
                targets.setdefault(src, []).append((str(n.get("id")), name))
    as_nodes: dict[str, tuple[str, str, str, Any]] = {}
    inline: dict[tuple[str, str], Any] = {}
    for pid, n in by_id.items():
        if n.get("type") != "PrimitiveNode":
            continue
        outs = n.get("outputs") or [{}]
        otype = outs[0].get("type") if isinstance(outs[0], dict) else None
        wv = n.get("widgets_values") or []
        value = wv[0] if isinstance(wv, list) and wv else None
        feeds = targets.get(pid, [])
        if not feeds or value is None:
            builder.note(f"node {pid} (PrimitiveNode) feeds nothing; dropped")
            continue
        if otype in ("INT", "FLOAT", "STRING", "BOOLEAN") and not isinstance(value, list):
            seedish = any((m := for_comfy(str(by_id.get(t, {}).get("type")))) is not None and name in m.seeds
                          for t, name in feeds)
            if otype == "INT" and (seedish or (isinstance(value, int) and value > INT_MAX)):
                as_nodes[pid] = ("Seed", "seed", "seed", value)
            else:
                our = {"INT": "Int", "FLOAT": "Float", "STRING": "String", "BOOLEAN": "Boolean"}[otype]
                as_nodes[pid] = (our, "value", "value", value)
        else:  # a choice list (COMBO): our choice inputs take literal values only
            for t, name in feeds:
                inline[(t, name)] = value
            builder.note(f"node {pid} (PrimitiveNode): its value {value!r} is written into the "
                         f"input(s) it feeds ({', '.join(f'{t}.{nm}' for t, nm in feeds)})")
    return as_nodes, inline


def import_ui(data: dict, builder: Builder) -> dict:
    """Fill ``builder`` from a UI-format workflow; returns the document-level extras
    (``groups``, ``ui``)."""
    if not isinstance(data.get("nodes"), list):
        raise ComfyImportError("'nodes' must be a list")
    if has_group_nodes(data):
        data = expand_group_nodes(data, builder.notes)
    if has_subgraphs(data):
        data = flatten_subgraphs(data, builder.notes)
    nodes = data["nodes"]
    links = _links_table(data)
    prims, inline = _primitive_plans(nodes, links, builder)
    types = {str(n.get("id")): n.get("type") for n in nodes if isinstance(n, dict)}
    for n in nodes:
        if not isinstance(n, dict) or "id" not in n or not isinstance(n.get("type"), str):
            raise ComfyImportError(f"a node entry has no 'id' or 'type': {str(n)[:80]}")
        nid, ctype = str(n["id"]), n["type"]
        mode = MODES.get(n.get("mode"), "normal")
        title = n.get("title") if isinstance(n.get("title"), str) else None
        ui = _ui(n)
        if ctype == "PrimitiveNode":
            if nid in prims:
                our, inp, out, value = prims[nid]
                wv = n.get("widgets_values")
                ctrl = wv[1] if isinstance(wv, list) and len(wv) > 1 else None
                if our in ("Int", "Seed") and isinstance(ctrl, str) and ctrl in SEED_CONTROL_VALUES:
                    ui["seed_control"] = {inp: ctrl}  # the primitive's "control after generate"
                builder.add_native(nid, our, {inp: value}, [out], title=title, mode=mode, ui=ui)
            continue
        m = for_comfy(ctype)
        where = f"node {nid} ({ctype})"
        values: dict[str, Any] = {}
        controls: dict[str, Any] = {}
        if m is not None:
            values, controls = widget_values(m, n.get("widgets_values"), where, builder)
            values.update(n.get("_widget_overrides") or {})  # set on a subgraph's instance
        node_links: dict[str, tuple[str, int]] = {}
        for name, _slot, target in _input_links(n, links):
            if (nid, name) in inline:
                values[name] = inline[(nid, name)]
            elif target[0] in prims or types.get(target[0]) != "PrimitiveNode":
                node_links[name] = target
            # else: a primitive that feeds nothing usable; its value stays the widget value
        if m is not None and controls:
            ui["seed_control"] = {m.our_input(k): v for k, v in controls.items()}
        outputs = [o.get("name", "") if isinstance(o, dict) else "" for o in n.get("outputs") or []]
        builder.add(nid, ctype, values, node_links, original=n, title=title, mode=mode, ui=ui,
                    output_names=outputs)
    builder.finish_links()
    _bypass_placeholders(builder)
    extras: dict[str, Any] = {"groups": []}
    for g in data.get("groups") or []:
        if not isinstance(g, dict):
            continue
        group = {k: v for k, v in g.items() if k in ("title", "color", "font_size")}
        b = g.get("bounding")
        if isinstance(b, list) and len(b) == 4:
            group["bounding"] = b
        extras["groups"].append(group)
    ds = (data.get("extra") or {}).get("ds") if isinstance(data.get("extra"), dict) else None
    if isinstance(ds, dict):
        extras["ui"] = {"view": {k: ds[k] for k in ("scale", "offset") if k in ds}}
    return extras



def _bypass_placeholders(builder: Builder) -> None:
    """A bypassed node passes an input of the same type through (ComfyUI's rule). For a bypassed
    node we have no type for, do that here, from the types the editor file records: links from it
    are re-pointed at what feeds its matching input, so the graph runs without it."""
    nodes = builder.nodes
    for pid, ph in nodes.items():
        if not (ph.get("missing") and ph.get("mode") == "bypass"):
            continue
        orig = ph.get("comfy") or {}
        out_types = [o.get("type") for o in orig.get("outputs") or [] if isinstance(o, dict)]
        in_types = {i.get("name"): i.get("type") for i in orig.get("inputs") or [] if isinstance(i, dict)}
        names = builder.placeholder_outputs.get(pid, [])
        for nid, n in nodes.items():
            for name, v in (n.get("inputs") or {}).items():
                if not (isinstance(v, dict) and v.get("from", [None])[0] == pid):
                    continue
                slot = names.index(v["from"][1]) if v["from"][1] in names else -1
                otype = out_types[slot] if 0 <= slot < len(out_types) else None
                feed = next((ph["inputs"][i] for i, t in in_types.items()
                             if t == otype and isinstance(ph["inputs"].get(i), dict)), None)
                if otype is not None and feed is not None:
                    n["inputs"][name] = dict(feed)
                    builder.note(f"node {nid}: input {name!r} now reads past the bypassed node {pid} "
                                 f"({ph['type']}), which has no nodegen equivalent")
