"""Copy/paste as workflow JSON on the system clipboard (so it works between windows and with a
text editor): the copied nodes with their links among themselves, plus groups fully inside."""

from __future__ import annotations

import copy
import json

from PySide6.QtCore import QRectF
from PySide6.QtGui import QGuiApplication

from nodegen.formats import document_from_data
from nodegen.kernel.workflow import FORMAT, VERSION, WorkflowError, is_link

from .auto_layout import column_positions

MIME = "application/x-nodegen-workflow"


def fragment(doc, nids, rects: dict | None = None) -> dict:
    """A workflow document holding copies of nodes ``nids`` (links to other nodes are kept; a
    paste keeps them only where those nodes exist). ``rects``: node id -> scene rect, to place
    nodes without a saved position and to pick the groups inside the selection."""
    nids = [n for n in nids if n in doc.nodes]
    nodes = {}
    for nid in nids:
        n = copy.deepcopy(doc.nodes[nid])
        if rects and nid in rects and not isinstance((n.get("ui") or {}).get("pos"), list):
            r = rects[nid]
            n.setdefault("ui", {})["pos"] = [round(r.x()), round(r.y())]
        nodes[nid] = n
    groups = []
    if rects:
        area = QRectF()
        for r in rects.values():
            area = area.united(r)
        for g in doc.groups:
            b = g.get("bounding") or [0, 0, 0, 0]
            if area.contains(QRectF(*b)):
                groups.append(copy.deepcopy(g))
    out = {"format": FORMAT, "version": VERSION, "metadata": {"copied_from": doc.token}, "nodes": nodes}
    if groups:
        out["groups"] = groups
    return out


def to_clipboard(frag: dict) -> None:
    """Put the fragment on the clipboard as JSON text. (Not as a QMimeData made in Python: with
    PySide6 6.12 the clipboard then crashes the process at exit, exit code 139.)"""
    text = json.dumps(frag, indent=2, ensure_ascii=False)
    QGuiApplication.clipboard().setText(text)


def from_clipboard() -> dict | None:
    """The workflow on the clipboard (our MIME type or JSON text: nodegen's, or a ComfyUI
    workflow or API prompt copied from a web page or a text editor), or None."""
    md = QGuiApplication.clipboard().mimeData()
    if md is None:
        return None
    if md.hasFormat(MIME):
        text = bytes(md.data(MIME)).decode("utf-8")
    elif md.hasText():
        text = md.text()
    else:
        return None
    try:
        return place_unplaced(document_from_data(json.loads(text)))
    except (json.JSONDecodeError, WorkflowError, ValueError, RecursionError):
        return None


def place_unplaced(frag: dict, column: float = 300.0, row: float = 260.0) -> dict:
    """Give the nodes without a ``ui.pos`` (a pasted ComfyUI API prompt has none) places in
    columns by link depth, so a paste does not stack them on one spot."""
    for nid, (x, y) in column_positions(frag.get("nodes", {}), column, row).items():
        frag["nodes"][nid].setdefault("ui", {})["pos"] = [x, y]
    return frag


def top_left(frag: dict) -> tuple[float, float]:
    xs, ys = [], []
    for n in frag.get("nodes", {}).values():
        pos = (n.get("ui") or {}).get("pos")
        if isinstance(pos, list) and len(pos) == 2:
            xs.append(pos[0])
            ys.append(pos[1])
    for g in frag.get("groups", []):
        b = g.get("bounding") or []
        if len(b) == 4:
            xs.append(b[0])
            ys.append(b[1])
    return (min(xs, default=0), min(ys, default=0))


def links_inside(frag: dict) -> int:
    return sum(1 for n in frag.get("nodes", {}).values() for v in (n.get("inputs") or {}).values()
               if is_link(v) and str(v["from"][0]) in frag["nodes"])
