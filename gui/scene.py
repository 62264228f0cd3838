"""The canvas scene: keeps node, wire and group items in step with the document, and offers
the small API the items call back into (push an edit, resolve a socket type, open an editor).

Mouse handling for wires and moves is in :mod:`gui.wiring`; inline editors and menus in
:mod:`gui.editors`.
"""

from __future__ import annotations

from collections import defaultdict

from PySide6.QtCore import QPointF, QRectF, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QGraphicsScene

from nodegen.kernel.workflow import is_link

from . import commands
from .auto_layout import column_positions
from .edge_item import EdgeItem
from .editors import EditorMixin
from .group_item import GroupItem
from .node_item import NodeItem
from .press import PressMixin
from .wiring import WiringMixin

THUMB_MAX = 512
#: nodes stack between their wires (0) and a wire being dragged (10); a clicked node comes first
NODE_Z, NODE_Z_MAX, NODE_Z_STEP = 1.0, 9.0, 0.001


class GraphScene(WiringMixin, PressMixin, EditorMixin, QGraphicsScene):
    #: a one-line message for the status bar (e.g. why a connection was refused)
    message = Signal(str)
    #: a wire was dropped on empty canvas: (scene pos, {"accepts"|"produces": type, ...})
    wireDropped = Signal(QPointF, dict)
    #: the user clicked a node's image
    imageActivated = Signal(str)

    def __init__(self, doc, schema, parent=None, resolve_file=None) -> None:
        QGraphicsScene.__init__(self, parent)
        WiringMixin.__init__(self)
        EditorMixin.__init__(self)
        PressMixin.__init__(self)
        self.doc = doc
        self.schema = schema
        self.resolve_file = resolve_file  # (kind, name) -> path or None
        self.items_by_id: dict[str, NodeItem] = {}
        self.edges: dict[tuple[str, str], EdgeItem] = {}
        self.edges_by_node: dict[str, set] = defaultdict(set)
        self.group_items: list[GroupItem] = []
        self._top_z = NODE_Z  # the z of the node last brought to the front
        self.setSceneRect(QRectF(-50000, -50000, 100000, 100000))
        self.setItemIndexMethod(QGraphicsScene.BspTreeIndex)
        doc.reset.connect(self.rebuild)
        doc.nodesAdded.connect(self._on_added)
        doc.nodesRemoved.connect(self._on_removed)
        doc.nodesChanged.connect(self._on_changed)
        doc.groupsChanged.connect(self._rebuild_groups)
        self.rebuild()

    # -- edits -------------------------------------------------------------------------
    def push(self, cmd) -> None:
        self.doc.undo_stack.push(cmd)

    def set_schema(self, schema) -> None:
        self.schema = schema
        for item in self.items_by_id.values():
            item.refresh()

    # -- sync with the document --------------------------------------------------------
    def rebuild(self) -> None:
        self.release_grab(record=False)  # a new document: a move of the old one means nothing
        self.close_editor()
        for item in list(self.items_by_id.values()):
            self.removeItem(item)
        for e in list(self.edges.values()):
            self.removeItem(e)
        self.items_by_id.clear()
        self.edges.clear()
        self.edges_by_node.clear()
        auto = self._auto_layout()
        for nid in self.doc.nodes:
            self._make_item(nid, auto.get(nid))
        for nid in self.doc.nodes:
            self._rebuild_edges_into(nid)
        self._rebuild_groups()

    def _make_item(self, nid: str, auto_pos=None) -> NodeItem:
        item = NodeItem(self, nid)
        pos = (self.doc.nodes[nid].get("ui") or {}).get("pos")
        if not (isinstance(pos, list) and len(pos) == 2) and auto_pos is not None:
            item.setPos(*auto_pos)
        self.addItem(item)
        self.items_by_id[nid] = item
        self.bring_to_front(item)  # a node added or pasted lies on top of those already there
        return item

    def bring_to_front(self, item: NodeItem) -> None:
        """Stack ``item`` above every other node (a clicked or dragged node is drawn over the
        ones it overlaps, as in ComfyUI; it used to stay behind whatever came later)."""
        if item.zValue() == self._top_z and self._top_z > NODE_Z:
            return
        if self._top_z + NODE_Z_STEP > NODE_Z_MAX:  # renumber, keeping the order
            order = sorted(self.items_by_id.values(), key=lambda it: it.zValue())
            for i, it in enumerate(order):
                it.setZValue(NODE_Z + i * NODE_Z_STEP)
            self._top_z = NODE_Z + len(order) * NODE_Z_STEP
        self._top_z += NODE_Z_STEP
        item.setZValue(self._top_z)

    def _auto_layout(self) -> dict[str, tuple[float, float]]:
        """Positions for nodes saved without ``ui.pos`` (kept out of the document until moved):
        columns by link depth."""
        return column_positions(self.doc.nodes)

    def _on_added(self, nids: list) -> None:
        for nid in nids:
            self._make_item(nid)
        for nid in nids:
            self._rebuild_edges_into(nid)

    def _on_removed(self, nids: list) -> None:
        for nid in nids:
            for key in list(self.edges_by_node.get(nid, ())):
                self._remove_edge(key)
            item = self.items_by_id.pop(nid, None)
            if item is not None:
                if self.editor_item is item:
                    self.close_editor()
                self.removeItem(item)
            self.edges_by_node.pop(nid, None)

    def _on_changed(self, nids: list) -> None:
        stale = [nid for nid in nids if nid in self.items_by_id and self.items_by_id[nid].run_state_stale()]
        self._clear_run_state_from(stale)
        for nid in nids:
            item = self.items_by_id.get(nid)
            if item is not None:
                item.refresh()
        for nid in nids:
            self._rebuild_edges_into(nid)
            self.node_geometry_changed(self.items_by_id.get(nid))

    def _clear_run_state_from(self, nids: list) -> None:
        """Run badges of ``nids`` and everything downstream no longer hold (an input changed)."""
        todo, seen = list(nids), set()
        while todo:
            nid = todo.pop()
            if nid in seen or nid not in self.items_by_id:
                continue
            seen.add(nid)
            item = self.items_by_id[nid]
            if item.state != "running":
                item.set_state(None, reason="", error="", seconds=None)
            todo.extend(self.doc.consumers(nid))

    def _remove_edge(self, key) -> None:
        e = self.edges.pop(key, None)
        if e is None:
            return
        self.edges_by_node[e.src].discard(key)
        self.edges_by_node[e.dst].discard(key)
        self.removeItem(e)

    def _rebuild_edges_into(self, nid: str) -> None:
        for key in [k for k in self.edges_by_node.get(nid, ()) if k[0] == nid]:
            self._remove_edge(key)
        n = self.doc.nodes.get(nid)
        if n is None:
            return
        for name, v in (n.get("inputs") or {}).items():
            if is_link(v):
                src = str(v["from"][0])
                if src not in self.items_by_id:
                    continue
                e = EdgeItem(self, src, v["from"][1], nid, name)
                self.addItem(e)
                self.edges[(nid, name)] = e
                self.edges_by_node[src].add((nid, name))
                self.edges_by_node[nid].add((nid, name))

    def _rebuild_groups(self) -> None:
        """New group items for the document's groups; a group selected before an edit of the
        groups (a move, a rename) stays selected when the number of groups is unchanged."""
        same = len(self.group_items) == len(self.doc.groups)
        selected = {g.index for g in self.group_items if g.isSelected()} if same else set()
        for g in self.group_items:
            self.removeItem(g)
        self.group_items = []
        for i in range(len(self.doc.groups)):
            item = GroupItem(self, i)
            self.addItem(item)
            item.choose(i in selected)
            self.group_items.append(item)

    def selected_groups(self) -> list[int]:
        return [g.index for g in self.group_items if g.isSelected()]

    # -- callbacks from items ----------------------------------------------------------
    def node_moved(self, item: NodeItem) -> None:
        for key in self.edges_by_node.get(item.nid, ()):
            e = self.edges.get(key)
            if e is not None:
                e.update_path()

    def node_geometry_changed(self, item: NodeItem | None) -> None:
        if item is not None:
            self.node_moved(item)

    def resolved_type(self, nid: str, side: str, name: str, depth: int = 0) -> str:
        """The concrete type behind an ``*`` port (through reroutes), or ``*``."""
        if depth > 32:
            return "*"
        n = self.doc.nodes.get(nid)
        if n is None:
            return "*"
        if side == "out":
            for v in (n.get("inputs") or {}).values():
                if is_link(v):
                    src = str(v["from"][0])
                    item = self.items_by_id.get(src)
                    spec = item.info.output(v["from"][1]) if item else None
                    t = spec["type"] if spec else "*"
                    return t if t != "*" else self.resolved_type(src, "out", v["from"][1], depth + 1)
            return "*"
        v = (n.get("inputs") or {}).get(name)
        if is_link(v):
            src, out = str(v["from"][0]), v["from"][1]
            item = self.items_by_id.get(src)
            t = (item.info.output(out) or {}).get("type", "*") if item else "*"
            return t if t != "*" else self.resolved_type(src, "out", out, depth + 1)
        return "*"

    def load_thumbnail(self, value) -> QImage | None:
        if not isinstance(value, str) or not value or self.resolve_file is None:
            return None
        path = self.resolve_file("image", value)
        if path is None:
            return None
        img = QImage(str(path))
        if img.isNull():
            return None
        if img.width() > THUMB_MAX or img.height() > THUMB_MAX:
            img = img.scaled(THUMB_MAX, THUMB_MAX, aspectMode=1, mode=1)
        return img

    def image_clicked(self, item: NodeItem) -> None:
        self.imageActivated.emit(item.nid)

    def insert_reroute(self, edge: EdgeItem, pos: QPointF) -> None:
        if self.schema.get("Reroute") is None:
            self.message.emit("no Reroute node type is installed")
            return
        self.doc.undo_stack.beginMacro("Add reroute point")
        add = commands.add_node(self.doc, "Reroute", (pos.x() - 20, pos.y() - 12))
        self.push(add)
        self.push(commands.connect(self.doc, edge.src, edge.output, add.new_id, "value"))
        self.push(commands.connect(self.doc, add.new_id, "value", edge.dst, edge.input))
        self.doc.undo_stack.endMacro()

    def selected_ids(self) -> list[str]:
        return [i.nid for i in self.selectedItems() if isinstance(i, NodeItem)]

    def select_ids(self, nids) -> None:
        self.clearSelection()
        for nid in nids:
            item = self.items_by_id.get(nid)
            if item is not None:
                item.setSelected(True)

    def nodes_rect(self, nids=None) -> QRectF:
        rect = QRectF()
        for nid, item in self.items_by_id.items():
            if nids is None or nid in nids:
                rect = rect.united(item.sceneBoundingRect())
        for g in self.group_items if nids is None else []:
            rect = rect.united(g.sceneBoundingRect())
        return rect
