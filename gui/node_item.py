"""A node on the canvas, drawn from its schema: title bar coloured by category, input ports left
and outputs right coloured by socket type, painted inline widgets for literal inputs, run state
(glow, progress bar, cached mark, time), problems (red outline + tooltip) and image previews.

Widgets are painted, not real Qt widgets (hundreds of nodes stay fast); interaction lives in
:mod:`gui.widgets` and edits go through undo commands.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyle

from gui import theme
from gui.widgets import WidgetInteraction, format_value
from nodegen.workflow import is_link

TITLE_H = 26.0
ROW_H = 22.0
PORT_R = 5.0
PAD = 8.0
DEFAULT_W = 240.0
MULTILINE_ROWS = 3
IMAGE_MAX_H = 240.0
SEED_CTRL_W = 64.0


class NodeItem(QGraphicsItem, WidgetInteraction):
    TITLE_FONT = QFont("Sans Serif", 9, QFont.Bold)
    FONT = QFont("Sans Serif", 8)

    def __init__(self, canvas, nid: str) -> None:
        super().__init__()
        self.canvas = canvas
        self.nid = nid
        self.setFlags(QGraphicsItem.ItemIsSelectable | QGraphicsItem.ItemIsMovable
                      | QGraphicsItem.ItemSendsScenePositionChanges)
        self.setAcceptHoverEvents(True)
        self.setZValue(1)
        # repaints blit a pixmap per node; it is redrawn only when the node or the zoom changes
        self.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        # run state (not part of the document)
        self.state: str | None = None     # running / cached / done / failed / skipped
        self.progress: tuple[int, int] | None = None
        self.seconds: float | None = None
        self.reason: str = ""
        self.error: str = ""
        self.problems: list[str] = []
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
        if isinstance(pos, list) and len(pos) == 2 and not self.canvas.dragging:
            if self.pos() != QPointF(pos[0], pos[1]):
                self.setPos(pos[0], pos[1])
        self.setToolTip(self._tooltip())
        self.update()

    def _update_source_image(self, inputs: dict) -> None:
        for spec in self.widget_rows:
            if spec.get("widget") == "file" and spec.get("file_kind") == "image":
                value = inputs.get(spec["name"], spec.get("default"))
                if value != self._source_key:
                    self._source_key = value
                    self.source_image = self.canvas.load_thumbnail(value)
                return
        self.source_image, self._source_key = None, None

    def _layout(self, size=None) -> None:
        self.prepareGeometryChange()
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
        self._widget_rect: dict[str, QRectF] = {}
        for spec in self.widget_rows:
            h = ROW_H * (MULTILINE_ROWS if spec.get("widget") == "multiline" else 1)
            self._widget_rect[spec["name"]] = QRectF(PAD, y + 1, self._width - 2 * PAD, h - 2)
            y += h
        img = self.images[self.image_index] if self.images else (
            self.preview if getattr(self, "preview", None) is not None else self.source_image)
        self._image_rect = QRectF()
        if img is not None and not img.isNull():
            w = self._width - 2 * PAD
            h = min(IMAGE_MAX_H, w * img.height() / max(1, img.width()))
            self._image_rect = QRectF(PAD, y + 4, w, h)
            y += h + 8
        y += 6
        if size:
            y = max(y, float(size[1]))
        self._height = y

    # -- geometry ----------------------------------------------------------------------
    def boundingRect(self) -> QRectF:  # noqa: N802
        return QRectF(-6, -6, self._width + 12, self._height + 12)

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
        if self.compact:
            if pos.x() < self._width / 2:
                return ("in", "value")
            return ("out", "value")
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

    def set_state(self, state: str | None, **info) -> None:
        self.state = state
        for k, v in info.items():
            setattr(self, k, v)
        if state != "running":
            self.progress = None
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
        return "<br>".join(lines)

    # -- painting ----------------------------------------------------------------------
    def paint(self, painter, option, widget=None) -> None:
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        selected = bool(option.state & QStyle.State_Selected)
        body = self.body_rect()
        title_col = self.color or theme.category_color(self.info.category)
        if self.info.missing:
            title_col = theme.MISSING
        border = theme.NODE_SELECTED if selected else (theme.ERROR if self.problems or self.state == "failed"
                                                        else theme.NODE_BORDER)
        if self.state == "running":
            painter.setPen(QPen(theme.RUNNING, 6))
            painter.setBrush(Qt.NoBrush)
            painter.drawRoundedRect(body.adjusted(-3, -3, 3, 3), 8, 8)
        painter.setPen(QPen(border, 2 if (selected or self.problems) else 1))
        painter.setBrush(theme.NODE_BODY if not self.color else self.color.darker(180))
        if self.compact:
            painter.drawRoundedRect(body, 10, 10)
            self._paint_ports(painter, lod)
            return
        painter.drawRoundedRect(body, 6, 6)
        painter.setPen(Qt.NoPen)
        painter.setBrush(title_col)
        tr = QRectF(1, 1, self._width - 2, TITLE_H - 1)
        painter.drawRoundedRect(tr, 5, 5)
        if not self.collapsed:
            painter.drawRect(QRectF(1, TITLE_H / 2, self._width - 2, TITLE_H / 2))
        if lod < 0.35:
            self._paint_mode(painter, body)
            return
        painter.setFont(self.TITLE_FONT)
        painter.setPen(theme.NODE_TEXT)
        text = self.title
        if self.info.missing:
            text = f"missing node type {self.info.type}"
        painter.drawText(tr.adjusted(PAD, 0, -60, 0), Qt.AlignVCenter | Qt.AlignLeft, text)
        self._paint_status(painter, tr)
        if not self.collapsed:
            painter.setFont(self.FONT)
            self._paint_ports(painter, lod)
            self.paint_widgets(painter)
            self._paint_image(painter)
            painter.setPen(QPen(theme.NODE_DIM_TEXT, 1))
            painter.drawLine(QPointF(self._width - 9, self._height - 3), QPointF(self._width - 3, self._height - 9))
        else:
            self._paint_ports(painter, lod)
        self._paint_mode(painter, body)

    def _paint_status(self, painter, tr: QRectF) -> None:
        label, col = "", theme.NODE_DIM_TEXT
        if self.state == "cached":
            label, col = "cached", theme.CACHED
        elif self.state == "done" and self.seconds is not None:
            label, col = f"{self.seconds:.2f}s", theme.RUNNING
        elif self.state == "failed":
            label, col = "failed", theme.ERROR
        elif self.state == "running":
            label, col = "running", theme.RUNNING
        if label:
            painter.setFont(self.FONT)
            painter.setPen(col)
            painter.drawText(tr.adjusted(0, 0, -PAD, 0), Qt.AlignVCenter | Qt.AlignRight, label)
        if self.state == "running" and self.progress:
            step, total = self.progress
            frac = max(0.0, min(1.0, step / total)) if total else 0.0
            painter.setPen(Qt.NoPen)
            painter.setBrush(QColor("#1b5e20"))
            painter.drawRect(QRectF(1, TITLE_H - 4, (self._width - 2), 3))
            painter.setBrush(theme.RUNNING)
            painter.drawRect(QRectF(1, TITLE_H - 4, (self._width - 2) * frac, 3))

    def _paint_mode(self, painter, body: QRectF) -> None:
        if self.mode in ("bypass", "muted"):
            painter.setPen(Qt.NoPen)
            painter.setBrush(theme.BYPASS if self.mode == "bypass" else theme.MUTED)
            painter.drawRoundedRect(body, 6, 6)
            painter.setPen(theme.NODE_TEXT)
            painter.setFont(self.FONT)
            painter.drawText(body.adjusted(0, 0, -PAD, -2), Qt.AlignBottom | Qt.AlignRight, self.mode)

    def _paint_ports(self, painter, lod: float) -> None:
        fm = QFontMetricsF(self.FONT)
        drag = self.canvas.drag_info()
        for side, specs in (("in", self.in_ports), ("out", self.outputs)):
            if self.compact:
                specs = [{"name": "value", "type": "*"}]
            for spec in specs:
                name = spec["name"]
                p = self.port_local(side, name)
                t = self.port_type(side, name)
                col = QColor(self.canvas.schema.color(t))
                ok = None
                if drag is not None and drag[0] != self:
                    ok = self.canvas.can_accept(drag, self, side, name)
                r = PORT_R + (2 if ok else 0)
                painter.setPen(QPen(QColor("#ffffff") if ok else theme.NODE_BORDER, 2 if ok else 1))
                painter.setBrush(col if ok is not False else col.darker(300))
                painter.drawEllipse(p, r, r)
                if self.collapsed or self.compact or lod < 0.5:
                    continue
                painter.setPen(theme.NODE_TEXT if ok is not False else theme.NODE_DIM_TEXT)
                label = name + ("" if spec.get("optional") is not True or side == "out" else "?")
                if side == "in":
                    painter.drawText(QPointF(PAD + 4, p.y() + fm.ascent() / 2 - 1), label)
                else:
                    painter.drawText(QPointF(self._width - PAD - 4 - fm.horizontalAdvance(name),
                                             p.y() + fm.ascent() / 2 - 1), name)

    def _paint_image(self, painter) -> None:
        rect = self._image_rect
        if rect.isNull():
            return
        img = self.images[self.image_index] if self.images else (
            self.preview if getattr(self, "preview", None) is not None else self.source_image)
        if img is None:
            return
        painter.drawImage(rect, img)
        if len(self.images) > 1:
            painter.setPen(theme.NODE_TEXT)
            painter.drawText(rect.adjusted(4, 2, -4, -2), Qt.AlignTop | Qt.AlignRight,
                             f"{self.image_index + 1}/{len(self.images)}")

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
        elif h and h[0] == "widget":
            spec = self.info.input(h[1]) or {}
            self.setToolTip(f"{h[1]} = {format_value(spec, (self.node.get('inputs') or {}).get(h[1], spec.get('default')))}"
                            + (f"<br>{spec.get('description')}" if spec.get("description") else ""))
        else:
            self.setToolTip(self._tooltip())
        self.setCursor(Qt.SizeFDiagCursor if h == ("resize",) else Qt.ArrowCursor)
        super().hoverMoveEvent(event)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        h = self.hit(event.pos())
        if event.button() == Qt.LeftButton and h is not None and h[0] in ("widget", "resize"):
            if not self.isSelected():
                self.scene().clearSelection()
                self.setSelected(True)
            self.widget_press(h, event)
            event.accept()
            return
        if event.button() == Qt.LeftButton and not self._image_rect.isNull() and self._image_rect.contains(event.pos()):
            self.canvas.image_clicked(self)
        super().mousePressEvent(event)

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
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        if event.pos().y() <= TITLE_H and not self.compact:
            self.canvas.edit_title(self)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)
