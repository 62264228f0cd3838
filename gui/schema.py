"""The node schema as the editor uses it: node types, socket colours, compatibility, search.

Everything comes from ``registry.schema(env)`` JSON; the editor never knows a concrete node type.
Types not in the schema (e.g. imported from ComfyUI) get a placeholder definition whose ports are
inferred from the links that touch them.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any

from nodegen.kernel.types import compatible, get_type
from nodegen.kernel.workflow import is_link

DEFAULT_TYPE_COLOR = "#9e9e9e"
FAR = 1 << 30  # no way from a type to the product


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

    @cached_property
    def search_fields(self) -> list[tuple[str, list[str], float, bool]]:
        """What the search matches (:func:`_fields`): made once, the search runs on every keystroke."""
        return _fields(self)
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
        """Fuzzy search by title/type (whole words, word starts, letters in order), then
        keywords, category and description (:func:`fuzzy_score`). ``accepts``: only types with
        an input that takes an output of that type; ``produces``: only types with an output that
        feeds an input of that type. Among equal matches (every type, for an empty query) the
        types people connect most come first, judged from the schema alone
        (:meth:`_accepts_rank`, :meth:`_produces_rank`, :meth:`_common_rank`), then the shortest
        name ("save" finds Save Image before Save Animated PNG), then alphabetical."""
        scored = []
        for info in self.nodes.values():
            if accepts is not None and self.first_input_for(info, accepts) is None:
                continue
            if produces is not None and self.first_output_for(info, produces) is None:
                continue
            s = fuzzy_score(text, info)
            if s is None:
                continue
            if accepts is not None:
                rank = self._accepts_rank(info, accepts)
            elif produces is not None:
                rank = self._produces_rank(info, produces)
            else:
                rank = self._common_rank(info)
            short = min(len(info.title), len(info.type)) if text.strip() else 0
            scored.append((-round(s, 1), rank, short, info.title.lower(), info))
        scored.sort(key=lambda x: x[:4])
        return [x[4] for x in scored[:limit]]

    # -- how commonly a node type is connected, judged from the schema alone -----------------
    @cached_property
    def product_type(self) -> str | None:
        """What graphs are made to produce: the type most output nodes end a branch with
        (several savers and previews take images; a latent or a model has one saver at most)."""
        counts: dict[str, int] = {}
        for info in self.nodes.values():
            taken = {i["type"] for i in info.inputs if i.get("widget") is None and not i.get("optional")}
            if _ends_branch(info) and len(taken) == 1 and "*" not in taken:
                t = next(iter(taken))
                counts[t] = counts.get(t, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
            return None
        return ranked[0][0]

    @cached_property
    def steps_to_product(self) -> dict[str, int]:
        """For each type, through how many nodes at least a value of it becomes the product
        (0 for the product itself): a LATENT is one decode from an IMAGE, a CONDITIONING one
        sampler further."""
        dist = {} if self.product_type is None else {self.product_type: 0}
        changed = True
        while changed:
            changed = False
            for info in self.nodes.values():
                outs = [dist[o["type"]] for o in info.outputs if o["type"] in dist]
                if not outs:
                    continue
                for spec in info.inputs:
                    t = spec["type"]
                    if spec.get("widget") is None and t != "*" and dist.get(t, FAR) > min(outs) + 1:
                        dist[t] = min(outs) + 1
                        changed = True
        return dist

    @cached_property
    def variants(self) -> set[str]:
        """Types named as a variant of another type, its name plus words (VAEDecodeTiled of
        VAEDecode, KSamplerAdvanced of KSampler): listed after the plain one."""
        names = set(self.nodes)
        return {t for t in names if any(t[:i] in names and (t[i].isupper() or t[i].isdigit() or t[i] == "_")
                                        for i in range(2, len(t)))}

    def _common_rank(self, info: NodeTypeInfo) -> tuple:
        """No wire: savers of anything but the product last, then by how tucked away the
        category is, plain types before their variants."""
        saver = _ends_branch(info) and not self._takes(info, self.product_type)
        return (int(saver), _depth(info), int(info.type in self.variants))

    def _takes(self, info: NodeTypeInfo, type_name: str | None) -> bool:
        return type_name is not None and any(
            i.get("widget") is None and i["type"] == type_name for i in info.inputs)

    def _accepts_rank(self, info: NodeTypeInfo, src_type: str) -> tuple:
        """A wire dragged from an output of ``src_type``. For the product (an image): the nodes
        that end the branch with it (Preview, Save) first, the plainest first. Otherwise the
        nodes that carry the pipeline on come first: those in top-level categories, plain types
        before their variants, those that bring the value nearer the product (a decode), those
        that join it with other kinds of values (a sampler joins a model and prompts to a
        latent), the fewest settings; then the nodes that take anything (reroutes, switches);
        savers and previews of anything but the product last."""
        spec = info.input(self.first_input_for(info, src_type) or "") or {}
        wildcard = spec.get("type") == "*" and src_type != "*"
        ends = _ends_branch(info)
        if ends and src_type == self.product_type:
            return (0, int(wildcard), _settings(info))
        tier = (3 if wildcard else 4) if ends else 2 if wildcard else 1
        dist = self.steps_to_product
        advances = any(dist.get(o["type"], FAR) < dist.get(src_type, FAR) for o in info.outputs)
        joined = {i["type"] for i in info.inputs if i.get("widget") is None and not i.get("optional")
                  and i["type"] not in (src_type, "*")}
        return (tier, _depth(info), int(info.type in self.variants), int(not advances),
                -len(joined), _settings(info))

    def _produces_rank(self, info: NodeTypeInfo, dst_type: str) -> tuple:
        """A wire dragged from an input wants a source: a node that makes the value from its
        settings alone (a loader, an empty latent) first, then one whose main output it is; a
        wildcard output (a reroute) last; then as with no wire."""
        name = self.first_output_for(info, dst_type)
        out = next(o for o in info.outputs if o["name"] == name)
        needs = [i for i in info.inputs if i.get("widget") is None and not i.get("optional")]
        main = [o["name"] for o in info.outputs][:1] == [name]
        fit = 0 if out["type"] == "*" != dst_type else 2 if main and not needs else 1 if main else 0
        return (-fit,) + self._common_rank(info)

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


def _ends_branch(info: NodeTypeInfo) -> bool:
    """A saver or preview: an output node with no outputs."""
    return info.is_output and not info.outputs


def _depth(info: NodeTypeInfo) -> int:
    """How tucked away the node's category is ("latent" 0, "latent/advanced" 1, "_for_testing" 2)."""
    return info.category.count("/") + (2 if info.category.startswith("_") else 0)


def _settings(info: NodeTypeInfo) -> int:
    return sum(1 for i in info.inputs if i.get("widget") is not None)


def fuzzy_score(text: str, info: NodeTypeInfo) -> float | None:
    """None when ``text`` does not match; higher is better. On the title and type name: the whole
    name (100), its start ("ksam" KSampler, "vae dec" VAEDecode: 90), the starts of its words in
    order ("clip enc" CLIPTextEncode, "dec" VAEDecode: 80, less a point per word skipped), in any
    order ("scale image" ImageScale: 70), inside it (60), its letters in order from a word start
    ("imgscl" ImageScale: 40 or less). Spaces, ``_`` and ``-`` do not count. Keywords, the
    category and the description count less (the description only by its words' starts). A
    query of several words not found together matches when each word is found somewhere,
    ranked lower."""
    q = " ".join(text.lower().split())
    if not q:
        return 0.0
    fields = info.search_fields
    best = _best(q, fields)
    words = q.split()
    if len(words) > 1:
        each = [_best(w, fields, loose=False) for w in words]
        if all(s is not None for s in each):
            together = 0.8 * sum(s for s in each if s is not None) / len(each)
            best = together if best is None else max(best, together)
    return best


def words_of(name: str) -> list[str]:
    """The words of a name, lower case: "VAEDecodeTiled" -> vae decode tiled, "CLIPTextEncodeSD3"
    -> clip text encode sd 3, "Load Image" -> load image, "latent/advanced" -> latent advanced."""
    return [w.lower() for w in re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", name)]


def _fields(info: NodeTypeInfo) -> list[tuple[str, list[str], float, bool]]:
    """(squeezed text, words, weight, names: all kinds of match) of each searchable field."""
    names = [(info.title, 1.0, True), (info.type, 1.0, True), (info.category, 0.4, True)]
    names += [(k, 0.5, True) for k in info.keywords] + [(info.description, 0.3, False)]
    return [(_squeezed(t.lower()), words_of(t), weight, full) for t, weight, full in names if t]


def _squeezed(text: str) -> str:
    return text.replace(" ", "").replace("_", "").replace("-", "")


def _best(q: str, fields, loose: bool = True) -> float | None:
    """The best weighted score of ``q`` over the fields; ``loose``: letters in order count too."""
    best: float | None = None
    for hay, words, weight, full in fields:
        s = _field_score(q, hay, words, full, loose)
        if s is not None and (best is None or s * weight > best):
            best = s * weight
    return best


def _field_score(q: str, hay: str, words: list[str], full: bool, loose: bool) -> float | None:
    sq = _squeezed(q)
    if full and hay == sq:
        return 100.0
    if full and hay.startswith(sq):
        return 90.0
    skipped = _word_starts(q.split(), words)
    if skipped is not None:
        return 80.0 - min(skipped, 10)
    if _word_starts(q.split(), words, any_order=True) is not None:
        return 70.0
    if not full:
        return None
    if sq in hay:
        return 60.0
    return _subsequence(sq, hay, words) if loose else None


def _word_starts(qwords: list[str], words: list[str], any_order: bool = False) -> int | None:
    """How many words were skipped when every query word starts a word of the name, in order
    (a query word may run on into the next words: "vaedec" over vae, decode); None when not."""
    if any_order:
        free = list(words)
        for w in qwords:
            hit = next((x for x in free if x.startswith(w)), None)
            if hit is None:
                return None
            free.remove(hit)
        return 0
    pos, skipped = 0, 0
    for w in qwords:
        for i in range(pos, len(words)):
            if "".join(words[i:]).startswith(w):
                n, covered = i, 0
                while covered < len(w):
                    covered += len(words[n])
                    n += 1
                skipped, pos = skipped + i - pos, n
                break
        else:
            return None
    return skipped


def _subsequence(q: str, hay: str, words: list[str]) -> float | None:
    """The letters of ``q`` in order in ``hay``, the first one starting a word."""
    starts = {w[0] for w in words if w}
    if not q or q[0] not in starts:
        return None
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
