"""The output gallery: thumbnails of every image the runs of this session wrote, newest first, and
sweeps shown as a grid (columns are the values of the input that varies fastest, rows those of the
other; a sweep of one input wraps to the panel's width, captioned with its values), beside the
sweep's own ``grid.png``. For any image: open
it, show it in its folder, copy it, or reopen the workflow that made it (every PNG nodegen writes
carries it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

THUMB = 96
PATH_ROLE = Qt.UserRole + 1
ALL = "All runs"


@dataclass
class Entry:
    path: str
    job: int
    caption: str = ""
    sweep: str | None = None
    values: dict = field(default_factory=dict)
    index: int = 0  # the job's place in its sweep


def thumbnail(path: str, size: int = THUMB) -> QPixmap:
    img = QImage(path)
    if img.isNull():
        return QPixmap()
    return QPixmap.fromImage(img.scaled(size, size, Qt.KeepAspectRatio, Qt.SmoothTransformation))


class Gallery(QWidget):
    #: reopen the workflow embedded in this image file
    openWorkflow = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.entries: list[Entry] = []
        #: sweep name -> its grid image (``grid.png`` in the sweep's folder)
        self.sweep_grids: dict[str, str] = {}
        self.view_combo = QComboBox()
        self.view_combo.addItem(ALL)
        self.view_combo.currentTextChanged.connect(lambda _: self.refresh())
        self.list = QListWidget()
        self.list.setViewMode(QListView.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setResizeMode(QListView.Adjust)
        self.list.setMovement(QListView.Static)
        self.list.setSpacing(4)
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(True)
        self.list.setContextMenuPolicy(Qt.CustomContextMenu)
        self.list.customContextMenuRequested.connect(
            lambda p: self.menu_for(self.list.itemAt(p)).popup(self.list.viewport().mapToGlobal(p)))
        self.list.itemDoubleClicked.connect(lambda item: self.open_image(item.data(PATH_ROLE)))
        self.view_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.view_combo.setMinimumContentsLength(8)
        bar = QHBoxLayout()
        self.buttons = {}
        for key, text, fn in (("open", "Open", self.open_image), ("reveal", "Folder", self.reveal),
                              ("copy", "Copy", self.copy), ("workflow", "Workflow", self.reopen)):
            b = QToolButton()
            b.setText(text)
            b.setAutoRaise(True)
            b.setToolTip({"open": "Open the image", "reveal": "Show the image in its folder",
                          "copy": "Copy the image", "workflow": "Reopen the workflow that made it"}[key])
            b.clicked.connect(lambda _=False, fn=fn: fn())
            bar.addWidget(b)
            self.buttons[key] = b
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        bar.addStretch(1)
        self.grid = QTableWidget()
        self.grid.setIconSize(QSize(THUMB, THUMB))
        self.grid.setEditTriggers(QTableWidget.NoEditTriggers)
        self.grid.itemDoubleClicked.connect(lambda item: self.open_image(item.data(PATH_ROLE)))
        self.grid.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.pages = QStackedWidget()
        self.pages.addWidget(self.list)
        self.pages.addWidget(self.grid)
        lay.addWidget(self.view_combo)
        lay.addLayout(bar)
        lay.addWidget(self.pages)
        self.list.itemSelectionChanged.connect(self._update_buttons)
        self._update_buttons()

    # -- content ---------------------------------------------------------------------------
    def add_images(self, paths: list[str], job: int, caption: str = "", sweep: str | None = None,
                   values: dict | None = None, index: int = 0) -> None:
        known = {(e.path, e.sweep) for e in self.entries}  # a resumed sweep shows the images it found
        new = [Entry(p, job, caption, sweep, dict(values or {}), index) for p in paths if (p, sweep) not in known]
        if not new:
            return
        self.entries.extend(new)
        if sweep is not None and self.view_combo.findText(sweep) < 0:
            self.view_combo.addItem(sweep)
        self.refresh()

    def set_sweep_grid(self, sweep: str, path: str, job: int = 0) -> None:
        """The sweep's grid image: listed with the other images, and its tooltip on the grid."""
        self.sweep_grids[sweep] = path
        self.add_images([path], job, f"{sweep} (grid)")
        self.refresh()

    def show_sweep(self, sweep: str) -> None:
        """Show one sweep as a grid, in the order of its values."""
        if self.view_combo.findText(sweep) < 0:
            self.view_combo.addItem(sweep)
        self.view_combo.setCurrentText(sweep)
        self.refresh()

    def shown(self) -> list[Entry]:
        which = self.view_combo.currentText()
        if which == ALL or not which:
            seen: set[str] = set()
            return [e for e in reversed(self.entries) if not (e.path in seen or seen.add(e.path))]
        return sorted((e for e in self.entries if e.sweep == which), key=lambda e: e.index)

    def refresh(self) -> None:
        self.list.clear()
        shown = self.shown()
        for e in shown:
            item = QListWidgetItem(QIcon(thumbnail(e.path)), e.caption or Path(e.path).name)
            item.setData(PATH_ROLE, e.path)
            item.setToolTip(f"{e.path}\nrun {e.job}" + (f"\n{e.caption}" if e.caption else ""))
            self.list.addItem(item)
        self._fill_grid([e for e in shown if e.sweep is not None] if self.view_combo.currentText() != ALL else [])
        self.pages.setCurrentWidget(self.grid if self.grid.rowCount() else self.list)
        self._update_buttons()

    def _fill_grid(self, entries: list[Entry]) -> None:
        """A sweep of two inputs as a table, each cell the image made with its values: columns are
        the values of the fastest-varying input, rows those of the other. (A sweep of one input is
        the thumbnail list in value order, captioned with the values, wrapping to the panel.)"""
        self.grid.clear()
        self.grid.setRowCount(0)
        self.grid.setColumnCount(0)
        if not entries or len(entries[0].values) < 2:
            return
        keys = list(entries[0].values)
        row_key, col_key = keys[0], keys[-1]
        rows = list(dict.fromkeys(str(e.values.get(row_key)) for e in entries))
        cols = list(dict.fromkeys(str(e.values.get(col_key)) for e in entries))
        self.grid.setRowCount(len(rows))
        self.grid.setColumnCount(len(cols))
        self.grid.setHorizontalHeaderLabels([f"{col_key.rpartition('.')[2]}={c}" for c in cols])
        self.grid.setVerticalHeaderLabels([f"{row_key.rpartition('.')[2]}={r}" for r in rows])
        for e in entries:
            r = rows.index(str(e.values.get(row_key)))
            c = cols.index(str(e.values.get(col_key)))
            item = QTableWidgetItem(QIcon(thumbnail(e.path)), "")
            item.setData(PATH_ROLE, e.path)
            item.setToolTip(f"{e.caption}\n{e.path}")
            self.grid.setItem(r, c, item)
        self.grid.setToolTip(self.sweep_grids.get(entries[0].sweep or "", ""))
        self.grid.resizeRowsToContents()
        self.grid.resizeColumnsToContents()

    def grid_path(self, row: int, col: int) -> str | None:
        item = self.grid.item(row, col)
        return item.data(PATH_ROLE) if item is not None else None

    def paths(self) -> list[str]:
        return [self.list.item(i).data(PATH_ROLE) for i in range(self.list.count())]

    def current_path(self) -> str | None:
        item = self.grid.currentItem() if self.pages.currentWidget() is self.grid else self.list.currentItem()
        return item.data(PATH_ROLE) if item is not None else None

    def select_path(self, path: str) -> None:
        self.view_combo.setCurrentText(ALL)
        for i in range(self.list.count()):
            if self.list.item(i).data(PATH_ROLE) == path:
                self.list.setCurrentRow(i)
                return

    # -- actions ---------------------------------------------------------------------------
    def menu_for(self, item) -> QMenu:
        menu = QMenu(self)
        if item is not None:
            self.list.setCurrentItem(item)
            menu.addAction("Open image", self.open_image)
            menu.addAction("Show in folder", self.reveal)
            menu.addAction("Copy image", self.copy)
            menu.addAction("Copy path", lambda: QGuiApplication.clipboard().setText(self.current_path() or ""))
            menu.addSeparator()
            menu.addAction("Open the workflow that made it", self.reopen)
        return menu

    def open_image(self, path: str | None = None) -> bool:
        path = path or self.current_path()
        return bool(path) and QDesktopServices.openUrl(QUrl.fromLocalFile(path))

    def reveal(self) -> bool:
        path = self.current_path()
        return bool(path) and QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(path).parent)))

    def copy(self) -> bool:
        path = self.current_path()
        img = QImage(path) if path else QImage()
        if img.isNull():
            return False
        QGuiApplication.clipboard().setImage(img)
        return True

    def reopen(self) -> None:
        path = self.current_path()
        if path:
            self.openWorkflow.emit(path)

    def _update_buttons(self) -> None:
        has = self.current_path() is not None
        for b in self.buttons.values():
            b.setEnabled(has)
