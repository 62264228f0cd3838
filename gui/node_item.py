"""A node on the canvas, drawn from its schema: title bar coloured by category, input ports left
and outputs right coloured by socket type, painted inline widgets for literal inputs, run state
(glow, progress bar, cached mark, time), problems (red outline + tooltip) and image previews.

Widgets are painted, not real Qt widgets (hundreds of nodes stay fast); interaction lives in
:mod:`gui.widgets` and edits go through undo commands.
"""

from __future__ import annotations

import html
import json

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainterPath
from PySide6.QtWidgets import QGraphicsItem, QGraphicsRectItem

from nodegen.kernel.workflow import is_link

from .node_paint import DETAIL_LOD, PAD, PORT_R, TITLE_H, NodePaintMixin
from .widgets import SEED_CTRL_W, WidgetInteraction, format_value

ROW_H = 22.0
DEFAULT_W = 240.0
MULTILINE_ROWS = 3
IMAGE_MAX_H = 240.0


class NodeItem(NodePaintMixin, QGraphicsRectItem, WidgetInteraction):
    TITLE_FONT = QFont("Sans Serif", 9, QFont.Bold)
    FONT = QFont("Sans Serif", 8)

    def __init__(self, canvas, nid: str) -> None:
        super().__init__()
        self.canvas = canvas
        self.nid = nid
        self.setPen(Qt.NoPen)  # the bounding rect is the C++ one (no Python call per repaint)
        self.setFlags(QGraphicsItem.ItemIsSelectable | QGraphicsItem.ItemIsMovable
                      | QGraphicsItem.ItemSendsScenePositionChanges)
        self.setAcceptHoverEvents(True)
        self.setZValue(1)
        # repaints blit a pixmap per node; it is redrawn only when the node or the zoom changes
        self.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        # run state (not part of the document)
        self.state: str | None = None     # running / cached / done / failed / skipped
        self.progress: tuple[int, int] | None = None
        self.started_at: float | None = None
        self.eta: float | None = None     # seconds left on the running node (from its progress)
        self.seconds: float | None = None
        self.reason: str = ""
        self.error: str = ""
        self.shown_text: list[str] = []  # text the node's last run shows (its ui "text")
        self.problems: list[str] = []
        self.bad_inputs: set[str] = set()  # inputs named by a problem (drawn with a red frame)
        self.images: list = []            # QImage list (outputs or previews)
        self.image_index = 0
        self.source_image = None          # a file widget's image (e.g. LoadImage)
        self._source_key = None
        self.preview = None
        self.highlight_type: str | None = None
        self._width = DEFAULT_W
        self._height = TITLE_H
        WidgetInteraction.__init__(self)
        self.refresh()

    # -- document -> layout ------------------------------------------------------------
    @property
    def node(self) -> dict:
        return self.canvas.doc.nodes[self.nid]

    def refresh(self) -> None:
        n = self.node
        self.info = self.canvas.schema.info_for(self.nid, n, self.canvas.doc.data)
        ui = n.get("ui") or {}
        inputs = n.get("inputs") or {}
        ports = set(ui.get("ports") or [])
        self.title = n.get("title") or self.info.title
        self.mode = n.get("mode", "normal")
        self.collapsed = bool(ui.get("collapsed"))
        self.color = QColor(ui["color"]) if isinstance(ui.get("color"), str) else None
        self.compact = self.info.type == "Reroute" and not self.info.missing
        self.in_ports: list[dict] = []
        self.widget_rows: list[dict] = []
        for spec in self.info.inputs:
            name = spec["name"]
            if spec.get("widget") is None or name in ports or is_link(inputs.get(name)) or spec.get("force_port") and name not in inputs:
                self.in_ports.append(spec)
            else:
                self.widget_rows.append(spec)
        self.outputs = self.info.outputs
        size = ui.get("size") if isinstance(ui.get("size"), list) else None
        self._width = max(120.0, float(size[0])) if size else DEFAULT_W
        self._update_source_image(inputs)
        self._layout(size)
        pos = ui.get("pos")
        if isinstance(pos, list) and len(pos) == 2 and not self.canvas.is_moving(self):
            if self.pos() != QPointF(pos[0], pos[1]):
                self.setPos(pos[0], pos[1])
        self.setToolTip(self._tooltip())
        self.update()

    def image_input(self) -> dict | None:
        """The spec of the node's first widget input that names an image file (from its schema)."""
        return next((spec for spec in self.widget_rows
                     if spec.get("widget") == "file" and spec.get("file_kind") == "image"), None)

    def _update_source_image(self, inputs: dict) -> None:
        spec = self.image_input()
        if spec is not None:
            value = inputs.get(spec["name"], spec.get("default"))
            if value != self._source_key:
                self._source_key = value
                self.source_image = self.canvas.load_thumbnail(value)
            return
        self.source_image, self._source_key = None, None

    def _layout(self, size=None) -> None:
        self._layout_rows(size)
        self.setRect(QRectF(-6, -6, self._width + 12, self._height + 12))

    def _layout_rows(self, size=None) -> None:
        self._port_y, self._widget_rect, self._image_rect = {}, {}, QRectF()
        if self.compact:
            self._width, self._height = 40.0, 24.0
            return
        if self.collapsed:
            self._height = TITLE_H
            return
        y = TITLE_H + 4
        self._port_y: dict[tuple[str, str], float] = {}
        for i, spec in enumerate(self.in_ports):
            self._port_y[("in", spec["name"])] = y + i * ROW_H + ROW_H / 2
        for i, spec in enumerate(self.outputs):
            self._port_y[("out", spec["name"])] = y + i * ROW_H + ROW_H / 2
        y += max(len(self.in_ports), len(self.outputs)) * ROW_H
        heights = [ROW_H * (MULTILINE_ROWS if spec.get("widget") == "multiline" else 1) for spec in self.widget_rows]
        img = self.images[self.image_index] if self.images else (
            self.preview if getattr(self, "preview", None) is not None else self.source_image)
        image_h = 0.0
        if img is not None and not img.isNull():
            image_h = min(IMAGE_MAX_H, (self._width - 2 * PAD) * img.height() / max(1, img.width()))
        natural = y + sum(heights) + (image_h + 8 if image_h else 0) + 6
        texts = [i for i, spec in enumerate(self.widget_rows) if spec.get("widget") == "multiline"]
        if size and texts and float(size[1]) > natural:  # a taller node shows more of its text
            for i in texts:
                heights[i] += (float(size[1]) - natural) / len(texts)
        self._widget_rect: dict[str, QRectF] = {}
        for spec, h in zip(self.widget_rows, heights, strict=True):
            self._widget_rect[spec["name"]] = QRectF(PAD, y + 1, self._width - 2 * PAD, h - 2)
            y += h
        self._image_rect = QRectF()
        if image_h:
            self._image_rect = QRectF(PAD, y + 4, self._width - 2 * PAD, image_h)
            y += image_h + 8
        y += 6
        if size:
            y = max(y, float(size[1]))
        self._height = y

    # -- geometry ----------------------------------------------------------------------
    def shape(self) -> QPainterPath:
        p = QPainterPath()
        p.addRect(QRectF(-PORT_R, 0, self._width + 2 * PORT_R, self._height))
        return p

    def body_rect(self) -> QRectF:
        return QRectF(0, 0, self._width, self._height)

    def port_local(self, side: str, name: str) -> QPointF:
        if self.compact:
            return QPointF(0 if side == "in" else self._width, self._height / 2)
        if self.collapsed:
            return QPointF(0 if side == "in" else self._width, TITLE_H / 2)
        y = self._port_y.get((side, name))
        if y is None:
            rect = self._widget_rect.get(name) if side == "in" else None
            y = rect.center().y() if rect is not None else TITLE_H / 2
        return QPointF(0 if side == "in" else self._width, y)

    def port_scene_pos(self, side: str, name: str) -> QPointF:
        return self.mapToScene(self.port_local(side, name))

    def widget_rect(self, name: str) -> QRectF | None:
        if self.collapsed or self.compact:
            return None
        return self._widget_rect.get(name)

    def image_rect(self) -> QRectF:
        return QRectF() if self.collapsed else self._image_rect

    def hit(self, pos: QPointF):
        """What is under ``pos`` (item coordinates): ("in"|"out", name), ("widget", name),
        ("resize",) or None."""
        if self.compact:  # a reroute dot: ends are ports, the middle moves it
            if pos.x() <= 12:
                return ("in", "value")
            if pos.x() >= self._width - 12:
                return ("out", "value")
            return None
        slack = PORT_R + 5
        for (side, name), y in (self._port_y.items() if not self.collapsed else []):
            if abs(pos.y() - y) > ROW_H / 2:
                continue
            if side == "in" and -slack <= pos.x() <= 40:
                return (side, name)
            if side == "out" and self._width - 40 <= pos.x() <= self._width + slack:
                return (side, name)
        if not self.collapsed:
            for name, rect in self._widget_rect.items():
                if rect.contains(pos):
                    return ("widget", name)
            if QRectF(self._width - 12, self._height - 12, 12, 12).contains(pos):
                return ("resize",)
        return None

    def port_type(self, side: str, name: str) -> str:
        spec = self.info.input(name) if side == "in" else self.info.output(name)
        t = spec["type"] if spec else "*"
        if t == "*":
            t = self.canvas.resolved_type(self.nid, side, name)
        return t

    # -- run state ---------------------------------------------------------------------
    def set_images(self, images: list) -> None:
        self.images = list(images)
        self.image_index = 0
        self.preview = None
        self._layout((self.node.get("ui") or {}).get("size"))
        self.canvas.node_geometry_changed(self)
        self.update()

    def set_preview(self, image) -> None:
        self.preview = image
        if not self.images:
            self._layout((self.node.get("ui") or {}).get("size"))
            self.canvas.node_geometry_changed(self)
        self.update()

    def _run_key(self) -> str:
        """What a run of this node depends on here: its inputs and mode (not its place or title)."""
        n = self.node
        return json.dumps([n.get("inputs"), n.get("mode")], sort_keys=True, default=str)

    def run_state_stale(self) -> bool:
        """A finished run's badge whose inputs have changed since (it no longer tells the truth)."""
        return self.state not in (None, "running") and self._run_key() != getattr(self, "_state_key", None)

    def set_state(self, state: str | None, **info) -> None:
        self.state = state
        self._state_key = self._run_key()
        for k, v in info.items():
            setattr(self, k, v)
        if state != "running":
            self.progress = None
            self.eta = None
        self.setToolTip(self._tooltip())
        self.update()

    def set_problems(self, problems: list) -> None:
        """Show validation problems (objects with ``input`` and ``message``) on this node."""
        self.problems = [(f"{p.input}: " if p.input else "") + p.message for p in problems]
        self.bad_inputs = {p.input for p in problems if p.input}
        self.setToolTip(self._tooltip())
        self.update()

    def _tooltip(self) -> str:
        lines = [f"<b>{self.title}</b> ({self.info.type}, id {self.nid})"]
        if self.info.missing:
            lines.append(f"<span style='color:#ef5350'>missing node type {self.info.type!r}: "
                         "its data is kept as it is</span>")
        elif self.info.description:
            lines.append(self.info.description)
        for p in self.problems:
            lines.append(f"<span style='color:#ef5350'>{p}</span>")
        if self.reason:
            lines.append(f"ran because: {self.reason}")
        if self.error:
            lines.append(f"<span style='color:#ef5350'>{self.error}</span>")
        for text in self.shown_text:
            lines.append(f"<pre>{html.escape(text)}</pre>")
        return "<br>".join(lines)

    # -- events ------------------------------------------------------------------------
    def itemChange(self, change, value):  # noqa: N802
        if change == QGraphicsItem.ItemPositionHasChanged:
            self.canvas.node_moved(self)
        return super().itemChange(change, value)

    def hoverMoveEvent(self, event) -> None:  # noqa: N802
        h = self.hit(event.pos())
        if h and h[0] in ("in", "out"):
            spec = self.info.input(h[1]) if h[0] == "in" else self.info.output(h[1])
            desc = (spec or {}).get("description", "")
            self.setToolTip(f"{h[1]}: {self.port_type(h[0], h[1])}" + (f"<br>{desc}" if desc else ""))
        elif h and h[0] == "widget" and (self.info.input(h[1]) or {}).get("widget") == "seed" \
                and event.pos().x() >= self.widget_rect(h[1]).right() - SEED_CTRL_W:
            self.setToolTip(f"what happens to {h[1]} after each run: fixed (kept), increment (+1) or "
                            "randomize; click to change")
        elif h and h[0] == "widget":
            spec = self.info.input(h[1]) or {}
            self.setToolTip(f"{h[1]} = {format_value(spec, (self.node.get('inputs') or {}).get(h[1], spec.get('default')))}"
                            + (f"<br>{spec.get('description')}" if spec.get("description") else ""))
        else:
            self.setToolTip(self._tooltip())
        self.setCursor(Qt.SizeFDiagCursor if h == ("resize",) else Qt.ArrowCursor)
        super().hoverMoveEvent(event)

    def _widgets_drawn(self) -> bool:
        """Are the widget rows readable at the view's zoom? Below DETAIL_LOD they are blank boxes,
        and a press there moves the node instead of changing a value nobody can see."""
        views = self.scene().views() if self.scene() is not None else []
        return not views or views[0].transform().m11() >= DETAIL_LOD

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.LeftButton:
            self.canvas.bring_to_front(self)
        h = self.hit(event.pos())
        if h is not None and h[0] == "widget" and not self._widgets_drawn():
            h = None
        if event.button() == Qt.LeftButton and h is not None and h[0] in ("widget", "resize"):
            if not self.isSelected():
                self.scene().clearSelection()
                self.setSelected(True)
            self.widget_press(h, event)
            event.accept()
            return
        if event.button() == Qt.LeftButton and not self._image_rect.isNull() and self._image_rect.contains(event.pos()):
            self.canvas.image_clicked(self)
        if event.modifiers() & Qt.ShiftModifier:  # shift-click adds to the selection, like ctrl
            event.setModifiers(event.modifiers() | Qt.ControlModifier)
        super().mousePressEvent(event)
        if event.button() == Qt.LeftButton and event.isAccepted():
            self.canvas.begin_press(self)  # a press on the body: it may become a move

    def sceneEvent(self, event) -> bool:  # noqa: N802
        if event.type() == QEvent.UngrabMouse:  # lost the mouse: no drag goes on any more
            self.canvas.lost_grab(self)
            self.cancel_widget_drag()
        return super().sceneEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self.widget_drag_active():
            self.widget_move(event)
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self.widget_drag_active():
            self.widget_release(event)
            event.accept()
            return
        if event.modifiers() & Qt.ShiftModifier:
            event.setModifiers(event.modifiers() | Qt.ControlModifier)
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        if event.pos().y() <= TITLE_H and not self.compact:
            self.canvas.edit_title(self)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)
