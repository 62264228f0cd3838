"""The dark theme: palette, style sheet and the canvas colours."""

from __future__ import annotations

import colorsys
import hashlib
from functools import lru_cache

from PySide6.QtGui import QColor, QPalette

CANVAS_BG = QColor("#1e1f22")
GRID_MINOR = QColor("#26282c")
GRID_MAJOR = QColor("#2e3035")
NODE_BODY = QColor("#2b2d31")
NODE_BORDER = QColor("#111214")
NODE_SELECTED = QColor("#e8c547")
NODE_TEXT = QColor("#dcdde0")
NODE_DIM_TEXT = QColor("#9a9ca3")
WIDGET_BG = QColor("#1f2023")
WIDGET_TEXT = QColor("#e6e6e6")
ERROR = QColor("#ef5350")
RUNNING = QColor("#4caf50")
CACHED = QColor("#42a5f5")
BYPASS = QColor(156, 39, 176, 90)
MUTED = QColor(30, 30, 30, 150)
MISSING = QColor("#b71c1c")
#: behind a node's run badge (time, cached, progress) in its coloured title bar
BADGE_BG = QColor("#141518")
#: hints in empty fields ("Search nodes...")
PLACEHOLDER = QColor("#8b8e96")

STYLE = """
QWidget { font-size: 10pt; }
QToolTip { color: #e6e6e6; background: #2b2d31; border: 1px solid #44464c; }
QDockWidget::title { background: #26282c; padding: 4px; }
QLineEdit, QPlainTextEdit, QListView, QTreeView, QListWidget, QTreeWidget {
    background: #1f2023; border: 1px solid #3a3c42; selection-background-color: #3d5a80; }
QMenu { background: #2b2d31; border: 1px solid #44464c; }
QMenu::item:selected { background: #3d5a80; }
QStatusBar { background: #1b1c1f; }
QTabBar::tab { background: #26282c; padding: 4px 10px; }
QTabBar::tab:selected { background: #34363c; }
"""


@lru_cache(maxsize=256)
def category_color(category: str) -> QColor:
    """A calm, stable title-bar colour per category (by its top-level name)."""
    top = (category or "misc").split("/")[0]
    h = int(hashlib.md5(top.encode()).hexdigest()[:4], 16) / 0xFFFF
    r, g, b = colorsys.hls_to_rgb(h, 0.30, 0.35)
    return QColor.fromRgbF(r, g, b)


def apply_dark(app) -> None:
    if app.property("nodegen_dark"):
        return  # restyling every widget again is slow and changes nothing
    app.setProperty("nodegen_dark", True)
    app.setStyle("Fusion")
    p = QPalette()
    base, alt, text = QColor("#1f2023"), QColor("#2b2d31"), QColor("#dcdde0")
    p.setColor(QPalette.Window, QColor("#232428"))
    p.setColor(QPalette.WindowText, text)
    p.setColor(QPalette.Base, base)
    p.setColor(QPalette.AlternateBase, alt)
    p.setColor(QPalette.ToolTipBase, alt)
    p.setColor(QPalette.ToolTipText, text)
    p.setColor(QPalette.Text, text)
    p.setColor(QPalette.Button, QColor("#2b2d31"))
    p.setColor(QPalette.ButtonText, text)
    p.setColor(QPalette.BrightText, QColor("#ff5252"))
    p.setColor(QPalette.Highlight, QColor("#3d5a80"))
    p.setColor(QPalette.HighlightedText, QColor("#ffffff"))
    p.setColor(QPalette.Link, QColor("#64b5f6"))
    p.setColor(QPalette.PlaceholderText, PLACEHOLDER)  # Qt's default is half-transparent black
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        p.setColor(QPalette.Disabled, role, QColor("#6d6f75"))
    app.setPalette(p)
    app.setStyleSheet(STYLE)
