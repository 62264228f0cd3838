"""The one place that knows whether a node is being dragged with the mouse.

A drag exists only between a left-button press on a node's body (not a widget, port or image)
and its release. Everything that can swallow the release ends it too, so no popup, focus change
or cancelled drag can leave the canvas believing a drag is going on:

* a popup (combo menu, context menu, search) opening: :meth:`GraphScene.release_grab` is called
  before it shows;
* the canvas losing focus (another window, a popup we did not open);
* the item losing its mouse grab (Qt's ``UngrabMouse`` event);
* a mouse move with the left button up (a release that never arrived);
* a new press while an old one is still recorded.

While a node drag is on, ``NodeItem.refresh`` leaves the dragged items where the mouse put them;
every other item follows the document.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QTimer


class NodePress:
    """A left-button press on a node's body: the item and where the selection started."""

    def __init__(self, item, start: dict[str, QPointF]) -> None:
        self.item = item
        self.start = dict(start)

    def moved(self, items_by_id: dict) -> dict[str, tuple[float, float]]:
        """The nodes that now stand somewhere else than at the press: {id: (x, y)}."""
        out = {}
        for nid, p in self.start.items():
            item = items_by_id.get(nid)
            if item is not None and item.pos() != p:
                out[nid] = (item.x(), item.y())
        return out


class PressMixin:
    """Scene side: begin / end / forget a node press (see the module docstring)."""

    def __init__(self) -> None:
        self.press: NodePress | None = None

    @property
    def dragging(self) -> bool:
        """A node drag is going on: a press on a node body whose item still holds the mouse."""
        p = self.press
        return p is not None and self.mouseGrabberItem() is p.item

    def is_moving(self, item) -> bool:
        return self.dragging and item.nid in self.press.start

    def begin_press(self, item) -> None:
        from .node_item import NodeItem

        selection = {i.nid: i.pos() for i in self.selectedItems() if isinstance(i, NodeItem)}
        selection.setdefault(item.nid, item.pos())
        self.press = NodePress(item, selection)

    def lost_grab(self, item) -> None:
        """``item`` lost the mouse before its release: end its press, keeping its move. The move
        is recorded once the scene has finished ungrabbing (recording rebuilds wires)."""
        if self.press is not None and self.press.item is item:
            workflow, moves = self.doc.workflow, self.end_press()
            if moves:
                QTimer.singleShot(0, self, lambda: self.doc.workflow is workflow and self._record(moves))

    def end_press(self) -> dict[str, tuple[float, float]]:
        """The release: returns the moves to record (and forgets the press)."""
        p, self.press = self.press, None
        if p is None:
            return {}
        return p.moved(self.items_by_id)

    def release_grab(self, record: bool = True) -> None:
        """Before a popup, on focus loss: end any mouse interaction on the canvas. A node moved
        by a drag interrupted this way keeps its move (recorded as an undo step), so what the
        user sees and the document agree."""
        grabber = self.mouseGrabberItem()
        moves = self.end_press()
        if grabber is not None:
            grabber.ungrabMouse()
        self.cancel_wire()
        if record:
            self._record(moves)

    def _record(self, moves: dict) -> None:
        moves = {nid: p for nid, p in moves.items() if nid in self.doc.nodes}
        if moves:
            from . import commands

            self.push(commands.move_nodes(self.doc, moves))
