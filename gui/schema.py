"""The node schema as the editor uses it: node types, socket colours, compatibility, search.

Everything comes from ``registry.schema(env)`` JSON; the editor never knows a concrete node type.
Types not in the schema (e.g. imported from ComfyUI) get a placeholder definition whose ports are
inferred from the links that touch them.
"""

from __future__ import annotations

from typing import Any

from nodegen.kernel.types import compatible, get_type
from nodegen.kernel.workflow import is_link

DEFAULT_TYPE_COLOR = "#9e9e9e"


class NodeTypeInfo:
    """One node type from the schema (or a placeholder for a missing type)."""

    def __init__(self, data: dict, missing: bool = False) -> None:
        self.data = data
        self.type: str = data["type"]
        self.title: str = data.get("display_name") or self.type
        self.category: str = data.get("category", "misc")
        self.description: str = data.get("description", "")
        self.inputs: list[dict] = list(data.get("inputs", []))
        self.outputs: list[dict] = list(data.get("outputs", []))
        self.is_output: bool = bool(data.get("output"))
        self.keywords: list[str] = list(data.get("keywords", []))
        self.missing = missing
        self._in = {i["name"]: i for i in self.inputs}
        self._out = {o["name"]: o for o in self.outputs}

    def input(self, name: str) -> dict | None:
        return self._in.get(name)

    def output(self, name: str) -> dict | None:
        return self._out.get(name)


class Schema:
    def __init__(self, schema: dict) -> None:
        self.raw = schema
        self.types: dict[str, dict] = schema.get("types", {})
        self.nodes: dict[str, NodeTypeInfo] = {k: NodeTypeInfo(v) for k, v in schema.get("nodes", {}).items()}

    @classmethod
    def from_engine(cls, engine: Any) -> Schema:
        return cls(engine.schema())

    # -- types ------------------------------------------------------------------------
    def color(self, type_name: str) -> str:
        t = self.types.get(type_name)
        return t.get("color", DEFAULT_TYPE_COLOR) if t else DEFAULT_TYPE_COLOR

    def compatible(self, src_type: str, dst_type: str) -> bool:
        a, b = get_type(src_type), get_type(dst_type)
        if a is None or b is None:
            return src_type == dst_type or "*" in (src_type, dst_type)
        return compatible(a, b)

    # -- node types -------------------------------------------------------------------
    def get(self, type_name: str) -> NodeTypeInfo | None:
        return self.nodes.get(type_name)

    def info_for(self, nid: str, node: dict, doc: dict) -> NodeTypeInfo:
        """The type info of a document node; a placeholder (ports from links) when unknown."""
        info = self.nodes.get(node.get("type", ""))
        if info is not None:
            return info
        return placeholder(nid, node, doc)

    def categories(self) -> dict[str, list[NodeTypeInfo]]:
        out: dict[str, list[NodeTypeInfo]] = {}
        for info in sorted(self.nodes.values(), key=lambda i: (i.category, i.title.lower())):
            out.setdefault(info.category, []).append(info)
        return out

    def search(self, text: str, *, accepts: str | None = None, produces: str | None = None,
               limit: int = 50) -> list[NodeTypeInfo]:
        """Fuzzy search by title/type/category/keywords. ``accepts``: only types with an input
        that takes an output of that type; ``produces``: only types with an output that feeds an
        input of that type. Among equal matches (every type, for an empty query) the types that
        continue the wire most directly come first: for a dragged output, the output nodes that
        take it as their one link (Save, Preview; those with fewer settings first), then the nodes
        whose first link input it is; for a dragged input, the nodes that make it from settings
        alone (loaders), then those whose first output it is."""
        scored = []
        for info in self.nodes.values():
            fit = 0  # how directly the node continues the wire (for an empty query)
            if accepts is not None:
                name = self.first_input_for(info, accepts)
                if name is None:
                    continue
                links = [i["name"] for i in info.inputs if i.get("widget") is None]
                # a node that ends the branch with it (Save, Preview) first, then a node whose
                # main input it is, then the rest
                fit = 2 if info.is_output and links == [name] else 1 if links[:1] == [name] else 0
            if produces is not None:
                name = self.first_output_for(info, produces)
                if name is None:
                    continue
                # a wire dragged from an input wants a source: a node that makes the value from
                # its settings alone (a loader, an empty latent) first, then one whose main
                # output it is; a wildcard output (a reroute) last
                out = next(o for o in info.outputs if o["name"] == name)
                needs = [i for i in info.inputs if i.get("widget") is None and not i.get("optional")]
                main = [o["name"] for o in info.outputs][:1] == [name]
                fit = 0 if out["type"] == "*" != produces else 2 if main and not needs else 1 if main else 0
            s = fuzzy_score(text, info)
            if s is not None:
                # among the nodes that end the branch, those made for the wire's type before those
                # that take anything, then the plainest (Save before an animated save)
                settings = (self._takes_anything(info, accepts), sum(1 for i in info.inputs if i.get("widget") is not None)) \
                    if fit == 2 else (0, 0)
                # among equal matches the shortest name first: "save" finds Save Image before
                # Save Animated PNG (the query covers more of it), then alphabetical
                short = min(len(info.title), len(info.type)) if text.strip() else 0
                scored.append((s, fit, settings, short, info.title.lower(), info))
        scored.sort(key=lambda x: (-x[0], -x[1], x[2], x[3], x[4]))
        return [x[5] for x in scored[:limit]]

    def _takes_anything(self, info: NodeTypeInfo, src_type: str) -> int:
        """1 when the input a ``src_type`` wire would go to is a wildcard (a preview of anything)."""
        name = self.first_input_for(info, src_type)
        spec = next((i for i in info.inputs if i["name"] == name), {})
        return int(spec.get("type") == "*" and src_type != "*")

    def first_input_for(self, info: NodeTypeInfo, src_type: str) -> str | None:
        for spec in info.inputs:
            if self.compatible(src_type, spec["type"]) and (spec.get("widget") is None or src_type != "*"):
                return spec["name"]
        return None

    def first_output_for(self, info: NodeTypeInfo, dst_type: str) -> str | None:
        for spec in info.outputs:
            if self.compatible(spec["type"], dst_type):
                return spec["name"]
        return None


def fuzzy_score(text: str, info: NodeTypeInfo) -> float | None:
    """None when ``text`` does not match; higher is better. Substring matches beat in-order
    letter matches ("ksam" finds KSampler, "imgscl" finds ImageScale). Spaces, ``_`` and ``-``
    do not count ("image scale" finds ImageScale, "load image" LoadImage); a query of several
    words that is not found whole matches when each word is found ("scale image" finds ImageScale,
    "vae decode tiled" VAEDecodeTiled), ranked a little lower."""
    q = " ".join(text.lower().split())
    if not q:
        return 0.0
    fields = [(info.title, 3.0), (info.type, 3.0), (info.category, 1.0)] + [(k, 1.5) for k in info.keywords]
    fields = [(_squeezed(text.lower()), weight) for text, weight in fields]
    best = _best_field_score(_squeezed(q), fields)
    words = q.split()
    if len(words) > 1:
        each = [_best_field_score(_squeezed(w), fields) for w in words]
        if all(s is not None for s in each):
            together = 0.8 * sum(s for s in each if s is not None) / len(each)
            best = together if best is None else max(best, together)
    return best


def _squeezed(text: str) -> str:
    return text.replace(" ", "").replace("_", "").replace("-", "")


def _best_field_score(q: str, fields: list[tuple[str, float]]) -> float | None:
    best: float | None = None
    for hay, weight in fields:
        if hay.startswith(q):
            s = 100 * weight
        elif q in hay:
            s = 60 * weight
        else:
            s = _subsequence(q, hay)
            if s is None:
                continue
            s *= weight
        best = s if best is None else max(best, s)
    return best


def _subsequence(q: str, hay: str) -> float | None:
    pos, gaps, last = 0, 0, -1
    for ch in q:
        idx = hay.find(ch, pos)
        if idx < 0:
            return None
        if last >= 0 and idx != last + 1:
            gaps += 1
        last, pos = idx, idx + 1
    return max(1.0, 40.0 - 5 * gaps - 0.2 * len(hay))


def placeholder(nid: str, node: dict, doc: dict) -> NodeTypeInfo:
    """A stand-in for a node type not in the registry: its inputs from its own links and
    literals, its outputs from the links that leave it. Its data is never changed."""
    inputs = []
    for name, value in (node.get("inputs") or {}).items():
        inputs.append({"name": name, "type": "*", "widget": None if is_link(value) else "readonly",
                       "optional": True, "required": False})
    outs: list[str] = []
    for other in doc.get("nodes", {}).values():
        for v in (other.get("inputs") or {}).values():
            if is_link(v) and str(v["from"][0]) == nid and v["from"][1] not in outs:
                outs.append(v["from"][1])
    data = {"type": node.get("type", "?"), "category": "missing",
            "description": f"missing node type {node.get('type')!r}",
            "inputs": inputs, "outputs": [{"name": o, "type": "*"} for o in outs]}
    return NodeTypeInfo(data, missing=True)
