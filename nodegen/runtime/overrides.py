"""``NODE.INPUT`` overrides: the one resolution shared by ``run --set``, the job server's ``set``
and ``sweep --over``.

``NODE`` is a node id, a unique title or a unique type name; ``INPUT`` is one of that node's
input names. Values typed on a command line are text: :func:`parse_text` turns them into the value
the input expects (text inputs keep the raw text; others are read as JSON when they parse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class OverrideError(ValueError):
    """A bad ``NODE.INPUT`` key; ``key`` is the key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Target:
    """Where an override lands: node id, input name and the input's spec (None for unknown types)."""

    key: str
    node_id: str
    input: str
    spec: Any


def resolve(registry: Any, wf: Any, key: str) -> Target:
    """The node and input that ``key`` (``NODE.INPUT``) names in workflow ``wf``."""
    if not isinstance(key, str) or "." not in key:
        raise OverrideError(key, f"{key!r}: expected NODE.INPUT (NODE is a node id or a unique title)")
    ref, name = key.rsplit(".", 1)
    try:
        nid = wf.resolve_node(ref)
    except KeyError as e:
        raise OverrideError(key, f"{key!r}: {e.args[0]}") from e
    nd = registry.get(wf.nodes[nid].get("type"))
    spec = nd.input(name) if nd else None
    if nd is not None and spec is None:
        raise OverrideError(key, f"{key!r}: node {nid} ({nd.type}) has no input {name!r}; "
                                 f"its inputs are {', '.join(nd.input_names)}")
    if spec is not None and not spec.is_literal:
        raise OverrideError(key, f"{key!r}: input {name!r} of node {nid} ({nd.type}) takes a link, "
                                 f"not a value")
    return Target(key, nid, name, spec)


def parse_text(raw: str, spec: Any, where: str = "value") -> Any:
    """A value typed as text: text inputs take the raw text; others are read as (strict) JSON when
    it parses, else kept as text. Raises ValueError for text that cannot be stored (lone
    surrogates) or JSON too deep or with duplicate keys."""
    from nodegen.kernel.jsondoc import check_text, loads

    check_text(raw, where)
    widget = getattr(spec, "widget", None)
    if widget in ("string", "multiline", "file"):
        return raw
    if widget == "choice":
        choices = spec.choice_list() if not callable(spec.choices) else None
        if choices is None or any(isinstance(c, str) for c in choices):
            return raw
    try:
        return loads(raw)
    except ValueError as e:
        if "not valid JSON" in str(e):
            return raw
        raise ValueError(f"{where}: {e}") from e


def apply(registry: Any, wf: Any, values: dict[str, Any], *, from_text: bool = False) -> list[Target]:
    """Set each ``NODE.INPUT`` of ``values`` in ``wf`` (in place). With ``from_text`` the values
    are command-line text, parsed for the input's type. Raises :class:`OverrideError`."""
    targets = []
    for key, value in values.items():
        t = resolve(registry, wf, key)
        wf.set(t.node_id, t.input, parse_text(value, t.spec) if from_text and isinstance(value, str) else value)
        targets.append(t)
    return targets


def split_assignment(item: str, flag: str = "--set") -> tuple[str, str]:
    """``"NODE.INPUT=VALUE"`` -> ``("NODE.INPUT", "VALUE")``."""
    if "=" not in item:
        raise OverrideError(item, f"{flag} {item!r}: expected NODE.INPUT=VALUE")
    key, raw = item.split("=", 1)
    if "." not in key:
        raise OverrideError(key, f"{flag} {item!r}: expected NODE.INPUT=VALUE (NODE is an id or a unique title)")
    return key, raw
