"""A group: a titled, coloured frame behind nodes (``doc["groups"][i]``). Dragging its title moves
the frame and the nodes inside it as one undo step; the corner grip resizes it. A click on the
title selects the group (Delete then removes the frame, never the nodes inside it)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem

from . import commands, theme

TITLE_H = 28.0
GRIP = 14.0
DEFAULT_COLOR = "#3f5a73"


class GroupItem(QGraphicsItem):
    FONT = QFont("Sans Serif", 12, QFont.Bold)

    def __init__(self, canvas, index: int) -> None:
        super().__init__()
        self.canvas, self.index = canvas, index
        g = canvas.doc.groups[index]
        b = list(g.get("bounding") or [0, 0, 300, 200])
        self.title = g.get("title", "Group")
        self.color = QColor(g.get("color") or DEFAULT_COLOR)
        self.setPos(b[0], b[1])
        self.w, self.h = float(b[2]), float(b[3])
        self.setZValue(-10)
        self._choosing = False
        self.setFlag(QGraphicsItem.ItemIsSelectable)
        self.setAcceptHoverEvents(True)  # the cursor shows where the frame can be resized
        self._drag = None

    def boundingRect(self) -> QRectF:  # noqa: N802
        return QRectF(0, 0, self.w, self.h)

    def shape(self) -> QPainterPath:
        """The title bar and the resize grip: where a click takes the group (elsewhere a press
        falls through to the canvas: a rubber band, or a double-click to add a node)."""
        p = QPainterPath()
        p.addRect(QRectF(0, 0, self.w, TITLE_H))
        p.addRect(self.grip_rect())
        return p

    def paint(self, painter, option, widget=None) -> None:
        fill = QColor(self.color)
        fill.setAlpha(60)
        painter.setPen(QPen(theme.NODE_SELECTED, 2.5) if self.isSelected() else QPen(self.color.lighter(130), 1.5))
        painter.setBrush(fill)
        painter.drawRoundedRect(self.boundingRect(), 6, 6)
        title = QColor(self.color)
        title.setAlpha(160)
        painter.setPen(Qt.NoPen)
        painter.setBrush(title)
        painter.drawRoundedRect(QRectF(0, 0, self.w, TITLE_H), 6, 6)
        painter.setPen(QColor("#e8e8e8"))
        painter.setFont(self.FONT)
        painter.drawText(QRectF(10, 0, self.w - 20, TITLE_H), Qt.AlignVCenter | Qt.AlignLeft, self.title)
        self._paint_grip(painter)

    def grip_rect(self) -> QRectF:
        return QRectF(self.w - GRIP, self.h - GRIP, GRIP, GRIP)

    def _paint_grip(self, painter) -> None:
        """The resize corner: three diagonal strokes, as a window's size grip."""
        painter.setPen(QPen(self.color.lighter(190), 1.6, Qt.SolidLine, Qt.RoundCap))
        right, bottom = self.w - 3, self.h - 3
        for d in (4.0, 8.0, 12.0):
            painter.drawLine(QPointF(right - d, bottom), QPointF(right, bottom - d))

    def hoverMoveEvent(self, event) -> None:  # noqa: N802
        if self.grip_rect().contains(event.pos()):
            self.setCursor(Qt.SizeFDiagCursor)
        else:
            self.unsetCursor()
        super().hoverMoveEvent(event)

    def hoverLeaveEvent(self, event) -> None:  # noqa: N802
        self.unsetCursor()
        super().hoverLeaveEvent(event)

    def contained_nodes(self) -> list[str]:
        rect = self.sceneBoundingRect()
        return [nid for nid, it in self.canvas.items_by_id.items() if rect.contains(it.sceneBoundingRect().center())]

    def mousePressEvent(self, event) -> None:  # noqa: N802
        p = event.pos()
        if p.y() <= TITLE_H:
            self._select(event.modifiers())
            self._drag = ("move", event.scenePos(), self.pos(),
                          {nid: self.canvas.items_by_id[nid].pos() for nid in self.contained_nodes()})
        elif self.grip_rect().contains(p):
            self._drag = ("resize", event.scenePos(), QPointF(self.w, self.h), None)
        else:
            event.ignore()
            return
        event.accept()

    def _select(self, modifiers) -> None:
        """Ctrl/Shift-click toggles the group in the selection; a plain click selects only it
        (the nodes selected before stayed selected, and Delete then removed them instead)."""
        if modifiers & (Qt.ControlModifier | Qt.ShiftModifier):
            self.choose(not self.isSelected())
        elif not self.isSelected():
            self.canvas.clearSelection()
            self.choose(True)

    def choose(self, selected: bool) -> None:
        """Select or deselect the group. Only this selects it: a rubber band drawn over nodes
        inside the frame selects those nodes and leaves the group alone."""
        self._choosing = True
        try:
            self.setSelected(selected)
        finally:
            self._choosing = False

    def itemChange(self, change, value):  # noqa: N802
        if change == QGraphicsItem.ItemSelectedChange and value and not self._choosing:
            return False
        return super().itemChange(change, value)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._drag is None:
            return
        kind, start, origin, nodes = self._drag
        d = event.scenePos() - start
        if kind == "move":
            self.setPos(origin + d)
            for nid, p in nodes.items():
                self.canvas.items_by_id[nid].setPos(p + d)
        else:
            self.prepareGeometryChange()
            self.w, self.h = max(120.0, origin.x() + d.x()), max(60.0, origin.y() + d.y())
            self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        self._finish()

    def sceneEvent(self, event) -> bool:  # noqa: N802
        if event.type() == QEvent.UngrabMouse and self._drag is not None:
            # the release will not come (a popup, focus loss): record the move once the scene
            # has finished ungrabbing (recording rebuilds the group items, this one included)
            drag, self._drag = self._drag, None
            QTimer.singleShot(0, self.canvas, lambda: self._commit(drag))
        return super().sceneEvent(event)

    def _finish(self) -> None:
        drag, self._drag = self._drag, None
        if drag is not None:
            self._commit(drag)

    def _commit(self, drag) -> None:
        """End a move or resize: record it as one undo step."""
        if self not in self.canvas.group_items:
            return  # the document was replaced or the groups rebuilt meanwhile
        kind, start, origin, nodes = drag
        doc, i = self.canvas.doc, self.index
        if kind == "move":
            if self.pos() == origin:
                return
            moves = {nid: (self.canvas.items_by_id[nid].x(), self.canvas.items_by_id[nid].y()) for nid in nodes}
            self.canvas.push(commands.move_nodes(doc, moves, {i: (self.x(), self.y())}))
        else:
            w, h = round(self.w), round(self.h)

            def resize(groups: list) -> None:
                b = groups[i]["bounding"]
                groups[i]["bounding"] = [b[0], b[1], w, h]
            self.canvas.push(commands.group_edit(doc, "Resize group", resize))

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        if event.pos().y() <= TITLE_H:
            self.canvas.edit_group_title(self)
            event.accept()
