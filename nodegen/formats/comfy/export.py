"""Export a nodegen document to ComfyUI's API ("prompt") format.

Only graphs made of mapped nodes export: every node type needs a :class:`NodeMap`. Editor-only
nodes are resolved the way ComfyUI's own front-end does it: notes and muted nodes are left out,
reroutes and bypassed nodes are followed through, and primitive nodes (Int, Float, String,
Boolean, Seed) are written as values into the inputs they feed. A placeholder kept from an
imported API-format workflow is written back from its original data.
"""

from __future__ import annotations

import re
from typing import Any

from nodegen.formats.comfy.mapping import for_ours
from nodegen.kernel.workflow import is_link

PRIMITIVES = {"Int": "value", "Float": "value", "String": "value", "Boolean": "value", "Seed": "seed"}
_SLOT = re.compile(r"^output_(\d+)$")


class ComfyExportError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("cannot export to ComfyUI:\n" + "\n".join(f"  - {p}" for p in problems))


def _label(nid: str, n: dict) -> str:
    return f"node {nid} ({n.get('title') or n.get('type')})"


class _Exporter:
    def __init__(self, doc: dict, registry: Any = None) -> None:
        self.nodes: dict[str, dict] = doc.get("nodes", {})
        self.registry = registry
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def resolve(self, value: dict, where: str, depth: int = 0) -> tuple[str, Any] | None:
        """Follow a link through reroutes, bypassed nodes and primitives:
        ``("link", [src, slot])`` or ``("value", v)``; None when it leads nowhere."""
        src, out = str(value["from"][0]), value["from"][1]
        n = self.nodes.get(src)
        if n is None or depth > 100:
            self.problems.append(f"{where}: linked to node {src}, which does not exist")
            return None
        t = n.get("type")
        if n.get("mode") == "muted":
            return None  # ComfyUI leaves muted nodes (and so their links) out
        if t in PRIMITIVES and not n.get("missing"):
            v = (n.get("inputs") or {}).get(PRIMITIVES[t])
            return self.resolve(v, where, depth + 1) if is_link(v) else ("value", v)
        if (t == "Reroute" or n.get("mode") == "bypass") and not n.get("missing"):
            nxt = self._pass_through(n, out)
            return self.resolve(nxt, where, depth + 1) if nxt is not None else None
        if n.get("missing"):
            m = _SLOT.match(out)
            # a placeholder that cannot be exported is reported on itself
            return ("link", [src, int(m.group(1))]) if m else None
        nm = for_ours(t)
        slot = nm.output_slot(out) if nm else None
        if slot is None:
            if nm is not None:
                self.problems.append(f"{where}: linked to output {out!r} of {_label(src, n)}, "
                                     f"which ComfyUI's {nm.comfy} does not have")
            return None  # an unmapped source is reported on that node
        return "link", [src, slot]

    def _pass_through(self, n: dict, out: str) -> dict | None:
        ins = {k: v for k, v in (n.get("inputs") or {}).items() if is_link(v)}
        if out in ins:
            return ins[out]
        nd = self.registry.get(n.get("type")) if self.registry is not None else None
        if nd is not None and nd.output_spec(out) is not None:
            from nodegen.kernel.types import compatible

            otype = nd.output_spec(out).type
            for spec in nd.inputs:
                if spec.name in ins and compatible(spec.type, otype):
                    return ins[spec.name]
            return None
        return next(iter(ins.values()), None)

    def node(self, nid: str, n: dict) -> dict | None:
        t = n.get("type")
        if n.get("mode") in ("muted", "bypass") or t in ("Note", "Reroute") or t in PRIMITIVES:
            return None
        if n.get("missing"):
            return self._placeholder(nid, n)
        nm = for_ours(t)
        if nm is None:
            self.problems.append(f"{_label(nid, n)}: node type {t!r} has no ComfyUI equivalent")
            return None
        inputs: dict[str, Any] = {}
        nd = self.registry.get(t) if self.registry is not None else None
        if nd is not None:  # ComfyUI wants every widget value: write our defaults too
            from nodegen.kernel.node import MISSING

            for spec in nd.inputs:
                if spec.is_literal and spec.default is not MISSING and spec.name not in (n.get("inputs") or {}):
                    cname = nm.comfy_input(spec.name)
                    if cname in nm.widgets:
                        inputs[cname] = spec.default
        for name, v in (n.get("inputs") or {}).items():
            cname = nm.comfy_input(name)
            if is_link(v):
                r = self.resolve(v, f"{_label(nid, n)}, input {name!r}")
                if r is None:
                    continue
                kind, v = r
                if kind == "link":
                    inputs[cname] = v
                    continue
            if v is None:
                continue
            if any(name in sources for sources, _ in nm.join.values()):
                continue  # written as part of a joined ComfyUI value below
            if cname not in nm.widgets and not (isinstance(v, list) and len(v) == 2):
                # one of our settings ComfyUI's node does not have: dropped; worth a word when
                # it is not our default (the exported graph then behaves differently)
                spec = nd.input(name) if nd is not None else None
                if spec is not None and spec.is_literal and v != spec.default:
                    self.warnings.append(f"{_label(nid, n)}: input {name!r} = {v!r} has no counterpart "
                                         f"in ComfyUI's {nm.comfy}; left out")
                continue
            conv = nm.to_comfy.get(cname)
            inputs[cname] = conv(v) if conv else v
        for cname, (sources, fn) in nm.join.items():
            if cname not in inputs:  # not linked: one value made of several of our inputs
                given = {k: v for k, v in (n.get("inputs") or {}).items() if k in sources and not is_link(v)}
                inputs[cname] = fn(given)
        for k, v in nm.comfy_constants.items():
            inputs.setdefault(k, v)
        out = {"class_type": nm.comfy, "inputs": inputs}
        if n.get("title"):
            out["_meta"] = {"title": n["title"]}
        return out

    def _placeholder(self, nid: str, n: dict) -> dict | None:
        orig = n.get("comfy") or {}
        if not isinstance(orig.get("class_type"), str):
            self.problems.append(f"{_label(nid, n)}: ComfyUI node {n.get('type')!r} was imported from "
                                 f"the editor format; its widget values have no names to export")
            return None
        inputs = {k: v for k, v in (orig.get("inputs") or {}).items()
                  if not (isinstance(v, list) and len(v) == 2 and isinstance(v[1], int))}
        for name, v in (n.get("inputs") or {}).items():
            if is_link(v):
                r = self.resolve(v, f"{_label(nid, n)}, input {name!r}")
                if r is not None:
                    inputs[name] = r[1]
        return {"class_type": orig["class_type"], "inputs": inputs}


def export_api(doc: dict, registry: Any = None, warnings: list[str] | None = None) -> dict:
    """The ComfyUI API-format prompt for ``doc``. Raises :class:`ComfyExportError` listing every
    node that cannot be written. With ``registry``, our input defaults are written out too, and
    settings ComfyUI cannot express that differ from our defaults are reported in ``warnings``."""
    ex = _Exporter(doc, registry)
    if warnings is not None:
        ex.warnings = warnings
    out: dict[str, dict] = {}
    for nid, n in doc.get("nodes", {}).items():
        item = ex.node(str(nid), n)
        if item is not None:
            out[str(nid)] = item
    if ex.problems:
        raise ComfyExportError(ex.problems)
    return out
