"""Text a new user must read stands out from what it is drawn on (WCAG contrast, 4.5:1 for body
text): the grey hints in empty fields ("Search nodes...", "Add node...", the sweep's "1..8") were
half-transparent black on the dark theme, and a node's run badge (time, "cached", "3/20 - 2s left")
was green or blue text on its coloured title bar."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QColor, QImage, QPainter, QPalette

from tests.gui.conftest import add


def _luminance(c: QColor) -> float:
    def ch(v: float) -> float:
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    return 0.2126 * ch(c.redF()) + 0.7152 * ch(c.greenF()) + 0.0722 * ch(c.blueF())


def contrast(fg: QColor, bg: QColor) -> float:
    if fg.alphaF() < 1:  # what the eye sees: the colour blended over the background
        a = fg.alphaF()
        fg = QColor.fromRgbF(fg.redF() * a + bg.redF() * (1 - a), fg.greenF() * a + bg.greenF() * (1 - a),
                             fg.blueF() * a + bg.blueF() * (1 - a))
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_placeholder_text_is_readable(window):
    for edit in (window.palette.filter, window.search.edit):
        pal = edit.palette()
        assert contrast(pal.color(QPalette.PlaceholderText), pal.color(QPalette.Base)) >= 4.5


def _render(item) -> QImage:
    rect = item.boundingRect()
    img = QImage(int(rect.width()), int(rect.height()), QImage.Format_ARGB32)
    img.fill(QColor("#000000"))
    p = QPainter(img)
    item.scene().render(p, QRectF(0, 0, rect.width(), rect.height()), item.sceneBoundingRect())
    p.end()
    return img


def test_run_badges_are_readable_on_every_title_bar(window):
    from nodegen.gui import theme
    from nodegen.gui.node_paint import badge_rect

    nid = add(window, "ImageInvert", 0, 0)
    item = window.scene.items_by_id[nid]
    window.scene.clearSelection()
    for state, extra in (("done", {"seconds": 1.25}), ("cached", {}), ("failed", {}), ("cancelled", {}),
                         ("running", {})):
        item.set_state(state, **extra)
        label, col = item._status_label()
        rect = badge_rect(item, label)
        assert rect is not None and not rect.isEmpty()
        # the badge's own background under the text, not the category colour of the title bar
        img = _render(item)
        corner = item.mapToScene(rect.topLeft() + QPointF(2, rect.height() / 2)) - item.sceneBoundingRect().topLeft()
        behind = img.pixelColor(int(corner.x()), int(corner.y()))
        assert contrast(col, behind) >= 4.5, (state, col.name(), behind.name())
        assert contrast(col, theme.BADGE_BG) >= 4.5
