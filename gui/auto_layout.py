"""Places for nodes that have none (a ComfyUI API prompt, a hand-written document): columns by
link depth, so such nodes do not stack on one spot."""

from __future__ import annotations

from collections import defaultdict

from nodegen.kernel.workflow import is_link


def column_positions(nodes: dict, column: float = 300.0, row: float = 260.0) -> dict[str, tuple[float, float]]:
    """``{node id: (x, y)}`` for the nodes of ``nodes`` without a ``ui.pos``: the column is the node's
    link depth (sources first), the row its order among the column's placed nodes."""
    depth: dict[str, int] = {}

    def d(nid: str, seen: tuple = ()) -> int:
        if nid not in depth:
            ups = [str(v["from"][0]) for v in (nodes[nid].get("inputs") or {}).values() if is_link(v)]
            depth[nid] = 1 + max((d(u, (*seen, nid)) for u in ups if u in nodes and u not in seen), default=-1)
        return depth[nid]

    rows: dict[int, int] = defaultdict(int)
    out = {}
    for nid, n in nodes.items():
        if not isinstance((n.get("ui") or {}).get("pos"), list):
            col = d(nid)
            out[nid] = (col * column, rows[col] * row)
            rows[col] += 1
    return out
