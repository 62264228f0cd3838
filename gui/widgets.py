"""Painted inline widgets of a node (one row per literal input) and how they respond to the mouse.

Kinds (from the schema): int / float (arrows, drag left-right to scrub, click to type), seed
(a number plus a "control after run": fixed / randomize / increment), choice and file (a menu of
the choices; image files also "Browse..."), string / multiline (click to type), bool (checkbox).
Every change is an undo command; a scrub is one merged step.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPen, QTextLayout, QTextOption

from . import commands, theme
from .node_paint import DETAIL_LOD

ARROW_W = 14.0
SEED_CTRL_W = 76.0  # room for "randomize" with a margin at any zoom
SEED_MODES = ("fixed", "increment", "randomize")
SCRUB_PX = 6.0


def number_step(spec: dict) -> float:
    if spec.get("step"):
        return float(spec["step"])
    if spec.get("widget") in ("int", "seed"):
        return 1
    lo, hi = spec.get("min"), spec.get("max")
    if lo is not None and hi is not None and hi - lo <= 2:
        return 0.01
    return 0.1


def clamp(spec: dict, value):
    lo, hi = spec.get("min"), spec.get("max")
    if lo is not None and value < lo:
        value = lo
    if hi is not None and value > hi:
        value = hi
    if spec.get("widget") in ("int", "seed"):
        return int(round(value))
    return float(value)


def format_value(spec: dict, value) -> str:
    w = spec.get("widget")
    if value is None:
        return ""
    if w == "float" and isinstance(value, (int, float)):
        step = number_step(spec)
        decimals = max(0, min(6, len(f"{step:.10f}".rstrip("0").split(".")[1]) if step < 1 else 1))
        return f"{value:.{max(decimals, 2)}f}"
    if w == "bool":
        return "true" if value else "false"
    return str(value)


SLIDER_FILL = QColor(100, 181, 246, 45)


def slider_fraction(spec: dict, value) -> float | None:
    """Where ``value`` sits in [min, max] for number widgets drawn as sliders (a float with a
    small range, or ``extra.slider``), else None."""
    if spec.get("widget") not in ("int", "float") or not isinstance(value, (int, float)):
        return None
    lo, hi = spec.get("min"), spec.get("max")
    if lo is None or hi is None or hi <= lo:
        return None
    if not ((spec.get("extra") or {}).get("slider") or (spec.get("widget") == "float" and hi - lo <= 100)):
        return None
    return max(0.0, min(1.0, (value - lo) / (hi - lo)))


def parse_value(spec: dict, text: str):
    """Text typed into a widget -> the value (raises ValueError)."""
    w = spec.get("widget")
    if w in ("int", "seed"):
        return clamp(spec, int(float(text.strip())))
    if w == "float":
        return clamp(spec, float(text.strip()))
    return text


class WidgetInteraction:
    """Mixin for NodeItem: painting and mouse handling of the widget rows."""

    def __init__(self) -> None:
        self._wdrag = None  # (kind, name, start_x, start_value, session, moved)

    def value_of(self, name: str):
        spec = self.info.input(name) or {}
        return (self.node.get("inputs") or {}).get(name, spec.get("default"))

    def seed_mode(self, name: str) -> str:
        ctrl = (self.node.get("ui") or {}).get("seed_control") or {}
        return ctrl.get(name, "fixed")

    # -- painting ----------------------------------------------------------------------
    def paint_widgets(self, painter, lod: float = 1.0) -> None:
        if lod < DETAIL_LOD:  # too small to read: boxes only (fast first paint of big zoomed-out graphs)
            painter.setPen(Qt.NoPen)
            painter.setBrush(theme.WIDGET_BG)
            for spec in self.widget_rows:
                rect = self.widget_rect(spec["name"])
                if rect is not None:
                    painter.drawRect(rect)
            return
        for spec in self.widget_rows:
            name = spec["name"]
            rect = self.widget_rect(name)
            if rect is None:
                continue
            w = spec.get("widget")
            value = self.value_of(name)
            bad = name in getattr(self, "bad_inputs", ())
            painter.setPen(QPen(theme.ERROR, 2) if bad else QPen(QColor("#3a3c42"), 1))
            painter.setBrush(theme.WIDGET_BG)
            painter.drawRoundedRect(rect, 4, 4)
            frac = slider_fraction(spec, value)
            if frac is not None:  # a slider: show where the value sits in its range
                painter.setPen(Qt.NoPen)
                painter.setBrush(SLIDER_FILL)
                painter.drawRoundedRect(QRectF(rect.left(), rect.top(), rect.width() * frac, rect.height()), 4, 4)
            inner = rect.adjusted(6, 0, -6, 0)
            painter.setPen(theme.NODE_DIM_TEXT)
            if w == "multiline":
                painter.drawText(inner.adjusted(0, 2, 0, 0), Qt.AlignTop | Qt.AlignLeft, name)
                painter.setPen(theme.WIDGET_TEXT)
                painter.drawText(multiline_text_rect(rect), Qt.AlignTop | Qt.AlignLeft | Qt.TextWordWrap,
                                 str(value or ""))
                continue
            if w == "bool":
                box = QRectF(inner.right() - 12, rect.center().y() - 6, 12, 12)
                painter.drawText(inner, Qt.AlignVCenter | Qt.AlignLeft, name)
                painter.setPen(QPen(theme.NODE_DIM_TEXT, 1))
                painter.setBrush(QColor("#64b5f6") if value else Qt.NoBrush)
                painter.drawRect(box)
                continue
            right = inner
            if w in ("int", "float", "seed"):
                vr = rect.adjusted(0, 0, -(SEED_CTRL_W if w == "seed" else 0), 0)
                painter.drawText(QRectF(vr.left() + 3, vr.top(), ARROW_W, vr.height()), Qt.AlignCenter, "\u25c2")
                painter.drawText(QRectF(vr.right() - ARROW_W - 3, vr.top(), ARROW_W, vr.height()),
                                 Qt.AlignCenter, "\u25b8")
                inner = vr.adjusted(ARROW_W + 4, 0, -ARROW_W - 4, 0)
                right = inner
                if w == "seed":
                    ctrl = QRectF(rect.right() - SEED_CTRL_W, rect.top(), SEED_CTRL_W, rect.height())
                    painter.drawLine(ctrl.topLeft(), ctrl.bottomLeft())
                    painter.drawText(ctrl, Qt.AlignCenter, self.seed_mode(name))
            elif w in ("choice", "file"):
                painter.drawText(inner, Qt.AlignVCenter | Qt.AlignRight, "\u25be")
                right = inner.adjusted(0, 0, -12, 0)
            painter.drawText(inner, Qt.AlignVCenter | Qt.AlignLeft, name)
            painter.setPen(theme.WIDGET_TEXT if w != "readonly" else theme.NODE_DIM_TEXT)
            text = format_value(spec, value)
            fm = painter.fontMetrics()
            room = right.width() - fm.horizontalAdvance(name) - 10
            painter.drawText(right, Qt.AlignVCenter | Qt.AlignRight, fm.elidedText(text, Qt.ElideMiddle, max(10, int(room))))

    # -- mouse -------------------------------------------------------------------------
    def widget_drag_active(self) -> bool:
        return self._wdrag is not None

    def cancel_widget_drag(self) -> None:
        """The release will not come (a popup, focus loss): keep what the scrub set, and a
        resize in progress goes back to the stored size."""
        drag, self._wdrag = self._wdrag, None
        if drag is not None and drag[0] == "resize":
            self._layout((self.node.get("ui") or {}).get("size"))
            self.canvas.node_geometry_changed(self)

    def widget_press(self, hit, event) -> None:
        canvas = self.canvas
        if hit[0] == "resize":
            self._wdrag = ("resize", None, event.scenePos(), (self._width, self._height), None, False)
            return
        name = hit[1]
        spec = self.info.input(name) or {}
        w = spec.get("widget")
        rect = self.widget_rect(name)
        x = event.pos().x()
        if w in ("int", "float", "seed"):
            if w == "seed" and x >= rect.right() - SEED_CTRL_W:
                mode = self.seed_mode(name)
                nxt = SEED_MODES[(SEED_MODES.index(mode) + 1) % len(SEED_MODES)] if mode in SEED_MODES else "fixed"
                canvas.push(commands.set_seed_control(canvas.doc, self.nid, name, nxt))
                return
            self._wdrag = ("number", name, x, self.value_of(name), commands.new_session(), False)
        elif w == "bool":
            canvas.push(commands.set_value(canvas.doc, self.nid, name, not bool(self.value_of(name))))
        elif w in ("choice", "file"):
            canvas.open_choice_menu(self, name, spec, event.screenPos())
        elif w == "string":
            canvas.open_editor(self, name, spec)
        elif w == "multiline":
            canvas.open_editor(self, name, spec, at=event.pos())  # the cursor where clicked

    def widget_move(self, event) -> None:
        kind, name, start, start_value, session, moved = self._wdrag
        if kind == "resize":
            d = event.scenePos() - start
            w = max(120.0, start_value[0] + d.x())
            h = max(TITLE_MIN, start_value[1] + d.y())
            self._wdrag = (kind, name, start, start_value, (round(w), round(h)), True)
            self._width, self._height = w, h
            self._layout([w, h])
            self.canvas.node_geometry_changed(self)
            return
        spec = self.info.input(name) or {}
        dx = event.pos().x() - start
        if not moved and abs(dx) < 4:
            return
        steps = int(dx / SCRUB_PX)
        base = start_value if isinstance(start_value, (int, float)) else 0
        value = clamp(spec, base + steps * number_step(spec))
        self._wdrag = (kind, name, start, start_value, session, True)
        if value != self.value_of(name):
            self.canvas.push(commands.set_value(self.canvas.doc, self.nid, name, value, merge_key=session))

    def widget_release(self, event) -> None:
        kind, name, start, start_value, session, moved = self._wdrag
        self._wdrag = None
        if kind == "resize":
            if moved:
                self.canvas.push(commands.set_ui(self.canvas.doc, [self.nid], "size", list(session), "Resize"))
            return
        if moved:
            return
        spec = self.info.input(name) or {}
        rect = self.widget_rect(name)
        vr = rect.adjusted(0, 0, -(SEED_CTRL_W if spec.get("widget") == "seed" else 0), 0)
        x = event.pos().x()
        value = self.value_of(name)
        base = value if isinstance(value, (int, float)) else 0
        if x <= vr.left() + ARROW_W + 4:
            new = clamp(spec, base - number_step(spec))
        elif x >= vr.right() - ARROW_W - 4:
            new = clamp(spec, base + number_step(spec))
        else:
            self.canvas.open_editor(self, name, spec)
            return
        if new != value:
            self.canvas.push(commands.set_value(self.canvas.doc, self.nid, name, new))


TITLE_MIN = 40.0


def multiline_text_rect(rect: QRectF) -> QRectF:
    """Where a multi-line widget's text is drawn in its row ``rect``: under the input's name."""
    return rect.adjusted(6, 16, -6, -2)


def text_index_at(text: str, font: QFont, rect: QRectF, pos: QPointF) -> int:
    """The position in ``text`` (drawn word-wrapped, top-left, into ``rect`` with ``font``, as
    QPainter.drawText does) nearest to ``pos``: where a click on the drawn text puts the cursor."""
    layout = QTextLayout(text.replace("\n", "\u2028"), font)
    option = QTextOption()
    option.setWrapMode(QTextOption.WordWrap)
    layout.setTextOption(option)
    leading = QFontMetricsF(font).leading()
    y = 0.0
    layout.beginLayout()
    lines = []
    while True:
        line = layout.createLine()
        if not line.isValid():
            break
        line.setLineWidth(rect.width())
        y += leading
        line.setPosition(QPointF(0, y))
        y += line.height()
        lines.append(line)
    layout.endLayout()
    if not lines:
        return 0
    x, y = pos.x() - rect.left(), pos.y() - rect.top()
    line = next((ln for ln in lines if y < ln.y() + ln.height()), None)
    if line is None:
        return len(text)  # below the last line: the end
    return line.xToCursor(max(0.0, x))


def widget_point(item, name: str, where: str = "center") -> QPointF:
    """Item coordinates of a spot in a widget row (for tests and keyboard actions)."""
    rect = item.widget_rect(name)
    if where == "left":
        return QPointF(rect.left() + 6, rect.center().y())
    if where == "right":
        spec = item.info.input(name) or {}
        r = rect.right() - (SEED_CTRL_W if spec.get("widget") == "seed" else 0)
        return QPointF(r - 6, rect.center().y())
    if where == "control":
        return QPointF(rect.right() - SEED_CTRL_W / 2, rect.center().y())
    return rect.center()
