"""Painting of a node item (see :mod:`gui.node_item`): body, title bar coloured by category,
run state (glow, progress bar, cached mark, time), ports coloured by type with their names,
widgets, images, and the bypass/mute veil. Zoomed far out it draws less (level of detail)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFontMetricsF, QPen
from PySide6.QtWidgets import QStyle

from . import theme

TITLE_H = 26.0
PAD = 8.0
PORT_R = 5.0
#: Below this zoom (level of detail) port names and widget values are not drawn; the view never
#: fits a graph below it (it pans instead), so what opens is readable.
DETAIL_LOD = 0.5


def running_label(progress, eta) -> str:
    """"running", or "7/20 · 3s left" once the node reports its steps."""
    if not progress or not progress[1]:
        return "running"
    text = f"{progress[0]}/{progress[1]}"
    if eta is not None:
        text += f" \u00b7 {eta:.0f}s left" if eta < 90 else f" \u00b7 {eta / 60:.0f} min left"
    return text


def badge_rect(item, label: str) -> QRectF | None:
    """Where a node's run badge sits: a dark pill at the right of its title bar, so the green,
    blue or red text reads on any title colour."""
    if not label:
        return None
    w = QFontMetricsF(item.FONT).horizontalAdvance(label) + 10
    return QRectF(item._width - PAD - w + 4, 5, w, TITLE_H - 10)


class NodePaintMixin:
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
        label, _ = self._status_label()
        room = QFontMetricsF(self.FONT).horizontalAdvance(label) + 2 * PAD + 6 if label else 0.0
        title_rect = tr.adjusted(PAD, 0, -max(60.0 if label else PAD, room), 0)
        text = QFontMetricsF(self.TITLE_FONT).elidedText(text, Qt.ElideRight, title_rect.width())
        painter.drawText(title_rect, Qt.AlignVCenter | Qt.AlignLeft, text)
        self._paint_status(painter, tr)
        if not self.collapsed:
            painter.setFont(self.FONT)
            self._paint_ports(painter, lod)
            self.paint_widgets(painter, lod)
            self._paint_image(painter)
            painter.setPen(QPen(theme.NODE_DIM_TEXT, 1))
            painter.drawLine(QPointF(self._width - 9, self._height - 3), QPointF(self._width - 3, self._height - 9))
        else:
            self._paint_ports(painter, lod)
        self._paint_mode(painter, body)

    def _status_label(self) -> tuple[str, object]:
        """The run-state text in the title bar and its colour."""
        label, col = "", theme.NODE_DIM_TEXT
        if self.state == "cached":
            label, col = "cached", theme.CACHED
        elif self.state == "done" and self.seconds is not None:
            label, col = f"{self.seconds:.2f}s", theme.RUNNING
        elif self.state == "failed":
            label, col = "failed", theme.ERROR
        elif self.state == "cancelled":
            label, col = "cancelled", theme.NODE_DIM_TEXT
        elif self.state == "running":
            label, col = running_label(self.progress, self.eta), theme.RUNNING
        return label, col

    def _paint_status(self, painter, tr: QRectF) -> None:
        label, col = self._status_label()
        rect = badge_rect(self, label)
        if rect is not None:
            painter.setPen(Qt.NoPen)
            painter.setBrush(theme.BADGE_BG)
            painter.drawRoundedRect(rect, 4, 4)
            painter.setFont(self.FONT)
            painter.setPen(col)
            painter.drawText(rect, Qt.AlignCenter, label)
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
            if not self.state and not self.compact:
                painter.setPen(theme.NODE_TEXT)
                painter.setFont(self.FONT)
                painter.drawText(QRectF(0, 0, self._width - PAD, TITLE_H), Qt.AlignVCenter | Qt.AlignRight,
                                 "bypassed" if self.mode == "bypass" else "muted")

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
                if self.collapsed or self.compact or lod < DETAIL_LOD:
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

