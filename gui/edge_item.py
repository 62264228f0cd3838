"""Wires: a link between an output port and an input port, drawn as a bezier curve coloured by
the socket type; and the temporary wire that follows the mouse while dragging."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainterPath, QPainterPathStroker, QPen
from PySide6.QtWidgets import QGraphicsPathItem


def wire_path(a: QPointF, b: QPointF) -> QPainterPath:
    path = QPainterPath(a)
    dx = max(40.0, abs(b.x() - a.x()) * 0.5)
    path.cubicTo(QPointF(a.x() + dx, a.y()), QPointF(b.x() - dx, b.y()), b)
    return path


class EdgeItem(QGraphicsPathItem):
    def __init__(self, canvas, src: str, output: str, dst: str, input_name: str) -> None:
        super().__init__()
        self.canvas = canvas
        self.src, self.output, self.dst, self.input = src, output, dst, input_name
        self.setZValue(0)
        self.setAcceptHoverEvents(True)
        self.setFlag(QGraphicsPathItem.ItemIsSelectable, False)
        self.setCacheMode(QGraphicsPathItem.DeviceCoordinateCache)
        self.update_path()

    @property
    def key(self) -> tuple[str, str]:
        return (self.dst, self.input)

    def update_path(self) -> None:
        s = self.canvas.items_by_id.get(self.src)
        d = self.canvas.items_by_id.get(self.dst)
        if s is None or d is None:
            return
        a = s.port_scene_pos("out", self.output)
        b = d.port_scene_pos("in", self.input)
        self.setPath(wire_path(a, b))
        t = s.port_type("out", self.output)
        col = QColor(self.canvas.schema.color(t))
        muted = s.mode == "muted"
        pen = QPen(col if not muted else col.darker(250), 2.5)
        pen.setCapStyle(Qt.RoundCap)
        self.setPen(pen)
        self.setToolTip(f"{t}: {s.title}.{self.output} \u2192 {d.title}.{self.input}"
                        "<br>double-click: add a reroute point")

    def shape(self) -> QPainterPath:
        stroker = QPainterPathStroker()
        stroker.setWidth(10)
        return stroker.createStroke(self.path())

    def hoverEnterEvent(self, event) -> None:  # noqa: N802
        pen = self.pen()
        pen.setWidthF(4)
        self.setPen(pen)

    def hoverLeaveEvent(self, event) -> None:  # noqa: N802
        pen = self.pen()
        pen.setWidthF(2.5)
        self.setPen(pen)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.canvas.insert_reroute(self, event.scenePos())
        event.accept()


class DragWire(QGraphicsPathItem):
    """The wire under the mouse while connecting. ``fixed_side`` is the side of the port it
    started from ("out": the free end looks for an input)."""

    def __init__(self, anchor: QPointF, fixed_side: str, color: str) -> None:
        super().__init__()
        self.anchor, self.fixed_side = anchor, fixed_side
        pen = QPen(QColor(color), 2.5, Qt.DashLine)
        self.setPen(pen)
        self.setZValue(10)

    def move_to(self, p: QPointF) -> None:
        if self.fixed_side == "out":
            self.setPath(wire_path(self.anchor, p))
        else:
            self.setPath(wire_path(p, self.anchor))
