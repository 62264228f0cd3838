"""Dock panels: problems (validation and failures; click selects the node), the image viewer
(zoom, batch navigation, open the file, copy) and the status bar's device/memory readout."""

from __future__ import annotations

import os
import sys

from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

NODE_ROLE = Qt.UserRole + 1


class ProblemsPanel(QListWidget):
    nodeActivated = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.itemClicked.connect(self._clicked)
        self.itemActivated.connect(self._clicked)

    def set_problems(self, problems: list) -> None:
        """``problems``: objects with ``node_id``, ``severity`` and ``str()``, or plain text."""
        self.clear()
        for p in problems:
            text = str(p)
            item = QListWidgetItem(("\u26a0 " if getattr(p, "severity", "error") == "warning" else "\u2716 ") + text)
            item.setData(NODE_ROLE, getattr(p, "node_id", None))
            item.setForeground(Qt.yellow if getattr(p, "severity", "error") == "warning" else Qt.red)
            self.addItem(item)

    def _clicked(self, item: QListWidgetItem) -> None:
        nid = item.data(NODE_ROLE)
        if nid:
            self.nodeActivated.emit(str(nid))


class ImageViewer(QWidget):
    """The images of one node: zoom, previous/next in the batch, open the file, copy."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.images: list = []
        self.paths: list[str] = []
        self.index = 0
        self.scale = 1.0
        self.fit = True
        self.label = QLabel(alignment=Qt.AlignCenter)
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.label)
        self.scroll.setWidgetResizable(True)
        self.scroll.setAlignment(Qt.AlignCenter)
        self.caption = QLabel()
        # the caption gives way to the buttons (one row of eight did not fit the dock)
        self.caption.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        bar, row2 = QHBoxLayout(), QHBoxLayout()
        self.buttons = {}
        for key, text, fn in (("prev", "\u25c0", lambda: self.show_index(self.index - 1)),
                              ("next", "\u25b6", lambda: self.show_index(self.index + 1)),
                              ("zoom_out", "\u2212", lambda: self.zoom(1 / 1.25)),
                              ("zoom_in", "+", lambda: self.zoom(1.25)),
                              ("fit", "Fit", self.fit_view), ("one", "1:1", lambda: self.zoom(None)),
                              ("open", "Open", self.open_file), ("copy", "Copy", self.copy)):
            b = QToolButton()
            b.setText(text)
            b.setAutoRaise(True)
            b.clicked.connect(fn)
            (row2 if key in ("open", "copy") else bar).addWidget(b)
            self.buttons[key] = b
        bar.addStretch(1)
        row2.insertWidget(0, self.caption, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(bar)
        lay.addLayout(row2)
        lay.addWidget(self.scroll)
        self.label.setWordWrap(True)
        self.setMinimumWidth(160)
        self._update()

    def set_images(self, images: list, paths: list[str] | None = None, title: str = "") -> None:
        self.images, self.paths, self.title = list(images), list(paths or []), title
        self.index = 0
        self.fit = True
        self._update()

    def show_index(self, i: int) -> None:
        if self.images:
            self.index = i % len(self.images)
            self._update()

    def zoom(self, factor) -> None:
        self.fit = False
        self.scale = 1.0 if factor is None else max(0.05, min(16.0, self.scale * factor))
        self._update()

    def fit_view(self) -> None:
        self.fit = True
        self._update()

    def current(self):
        return self.images[self.index] if self.images else None

    def _update(self) -> None:
        img = self.current()
        for k in ("prev", "next"):
            self.buttons[k].setEnabled(len(self.images) > 1)
        for k in ("zoom_out", "zoom_in", "fit", "one", "copy"):
            self.buttons[k].setEnabled(img is not None)
        self.buttons["open"].setEnabled(self.index < len(self.paths))
        if img is None:
            self.label.setPixmap(QPixmap())
            self.label.setText("Run a graph; click an image on a node to see it here.")
            self.caption.setText("")
            return
        pm = QPixmap.fromImage(img)
        if self.fit:
            vp = self.scroll.viewport().size()
            s = min(vp.width() / max(1, pm.width()), vp.height() / max(1, pm.height()), 4.0)
            self.scale = s if s > 0 else 1.0
        size = pm.size() * self.scale
        self.label.setPixmap(pm.scaled(size, Qt.KeepAspectRatio, Qt.SmoothTransformation))
        self.caption.setText(f"{getattr(self, 'title', '')}  {self.index + 1}/{len(self.images)}  "
                             f"{img.width()}\u00d7{img.height()}  {self.scale * 100:.0f}%")

    def sizeHint(self):  # noqa: N802 - keep the canvas the widest part of the window
        return QSize(300, 300)

    def open_file(self) -> None:
        if self.index < len(self.paths):
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.paths[self.index]))

    def copy(self) -> None:
        img = self.current()
        if img is not None:
            QGuiApplication.clipboard().setImage(img)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.fit and self.images:
            self._update()


def memory_text() -> str:
    """Process memory (and GPU memory when torch uses CUDA) for the status bar."""
    rss = 0
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        try:
            import resource

            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        except Exception:  # noqa: BLE001
            pass
    text = f"RAM {rss / 2**30:.2f} GiB"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        text += f"  VRAM {torch.cuda.memory_allocated() / 2**30:.2f} GiB"
    return text


class DeviceStatus(QLabel):
    """"device: cpu  RAM 1.2 GiB", refreshed every two seconds."""

    def __init__(self, engine, parent=None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(2000)
        self.refresh()

    def device(self) -> str:
        ex = getattr(self.engine, "_executor", None)
        if ex is not None:
            return str(ex.device)
        name = getattr(self.engine, "_device_name", "auto")
        if name == "auto":
            torch = sys.modules.get("torch")
            if torch is not None:
                return "cuda" if torch.cuda.is_available() else "cpu"
        return str(name)

    def refresh(self) -> None:
        self.setText(f"device: {self.device()}   {memory_text()}")
