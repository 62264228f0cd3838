"""Adding nodes: the palette (node types by category, fuzzy search, drag onto the canvas or
double-click) and the quick search popup (double-click on the canvas, Tab, or a wire dropped on
empty canvas, then filtered to the node types that fit the wire)."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, Signal
from PySide6.QtGui import QDrag, QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .view import NODE_MIME

TYPE_ROLE = Qt.UserRole + 1


#: Category roots listed last and folded: what ComfyUI users look for less often.
LATER = ("advanced", "experimental", "_for_testing", "testing", "deprecated")


class PaletteTree(QTreeWidget):
    def startDrag(self, actions) -> None:  # noqa: N802
        item = self.currentItem()
        type_name = item.data(0, TYPE_ROLE) if item else None
        if not type_name:
            return
        drag = QDrag(self)
        drag.setMimeData(mime_for(type_name))
        drag.exec(Qt.CopyAction)


def mime_for(type_name: str) -> QMimeData:
    md = QMimeData()
    md.setData(NODE_MIME, type_name.encode())
    md.setText(type_name)
    return md


class Palette(QWidget):
    """The palette dock's contents."""

    #: add this node type (double-click / Enter), at the centre of the view
    activated = Signal(str)

    def __init__(self, schema, parent=None) -> None:
        super().__init__(parent)
        self.filter = QLineEdit(placeholderText="Search nodes\u2026")
        self.filter.setClearButtonEnabled(True)
        self.tree = PaletteTree()
        self.tree.setHeaderHidden(True)
        self.tree.setDragEnabled(True)
        self.tree.setDragDropMode(QTreeWidget.DragOnly)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.filter)
        lay.addWidget(self.tree)
        self.filter.textChanged.connect(self.apply_filter)
        self.filter.returnPressed.connect(self._activate_first)
        self.tree.itemActivated.connect(self._activate)
        self.set_schema(schema)

    def set_schema(self, schema) -> None:
        self.schema = schema
        self.apply_filter(self.filter.text())

    def apply_filter(self, text: str = "") -> None:
        self.tree.clear()
        if text.strip():
            for info in self.schema.search(text):
                self.tree.addTopLevelItem(self._leaf(info))
            return
        folders: dict[str, QTreeWidgetItem] = {}
        for category, infos in self.schema.categories().items():
            folder = self._folder(category, folders)
            for info in infos:
                folder.addChild(self._leaf(info))
        for name in sorted((n for n in folders if "/" not in n), key=lambda n: (n.lower() in LATER, n.lower())):
            self.tree.addTopLevelItem(folders[name])
        self.tree.expandAll()
        for name in LATER:  # the rarely used roots start folded (as ComfyUI's menu keeps them a click away)
            for folder in (f for n, f in folders.items() if n.split("/")[0].lower() == name):
                folder.setExpanded(False)

    def _folder(self, category: str, folders: dict[str, QTreeWidgetItem]) -> QTreeWidgetItem:
        """The tree item of ``category`` ("advanced/guidance": "guidance" inside "advanced")."""
        if category in folders:
            return folders[category]
        parent, _, name = category.rpartition("/")
        item = QTreeWidgetItem([name or category])
        item.setFlags(Qt.ItemIsEnabled)
        if parent:
            self._folder(parent, folders).addChild(item)
        folders[category] = item
        return item

    def _leaf(self, info) -> QTreeWidgetItem:
        item = QTreeWidgetItem([info.title])
        item.setData(0, TYPE_ROLE, info.type)
        item.setToolTip(0, f"<b>{info.title}</b> ({info.type})<br>{info.description}")
        item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsDragEnabled)
        return item

    def leaf(self, type_name: str) -> QTreeWidgetItem | None:
        it = self.tree.invisibleRootItem()
        stack = [it.child(i) for i in range(it.childCount())]
        while stack:
            item = stack.pop()
            if item.data(0, TYPE_ROLE) == type_name:
                return item
            stack.extend(item.child(i) for i in range(item.childCount()))
        return None

    def _activate(self, item: QTreeWidgetItem) -> None:
        t = item.data(0, TYPE_ROLE)
        if t:
            self.activated.emit(t)

    def _activate_first(self) -> None:
        if self.tree.topLevelItemCount():
            self._activate(self.tree.topLevelItem(0))


class QuickSearch(QFrame):
    """A small search popup at a canvas position. ``chosen(type_name, scene_pos, filter)``."""

    chosen = Signal(str, QPointF, dict)

    def __init__(self, schema, parent=None) -> None:
        super().__init__(parent, Qt.Popup)
        self.schema = schema
        self.setFrameShape(QFrame.StyledPanel)
        self.edit = QLineEdit(placeholderText="Add node\u2026")
        self.hint = QLabel()
        self.hint.setStyleSheet("color:#9a9ca3; font-size:9pt;")
        self.list = QListWidget()
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.ElideMiddle)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.edit)
        lay.addWidget(self.hint)
        lay.addWidget(self.list)
        self.resize(320, 360)
        self.edit.textChanged.connect(self.refresh)
        self.edit.returnPressed.connect(self.accept_current)
        self.list.itemActivated.connect(lambda _: self.accept_current())
        self.edit.installEventFilter(self)
        self.scene_pos = QPointF()
        self.filt: dict = {}

    def open_at(self, scene_pos: QPointF, global_pos, filt: dict | None = None) -> None:
        self.scene_pos, self.filt = scene_pos, dict(filt or {})
        if "accepts" in self.filt:
            self.hint.setText(f"nodes that take {self.filt['accepts']}")
        elif "produces" in self.filt:
            self.hint.setText(f"nodes that give {self.filt['produces']}")
        else:
            self.hint.setText("")
        self.hint.setVisible(bool(self.hint.text()))
        self.edit.clear()
        self.refresh("")
        self.move(self._on_screen(global_pos))
        self.show()
        self.edit.setFocus()

    def _on_screen(self, global_pos) -> QPoint:
        """``global_pos``, moved so the whole popup lies on that screen (a wire dropped near the
        bottom or right edge opened it partly off the screen)."""
        screen = QGuiApplication.screenAt(global_pos) or self.screen() or QGuiApplication.primaryScreen()
        area = screen.availableGeometry()
        w, h = self.frameGeometry().width() + 4, self.frameGeometry().height() + 4
        x = max(area.left(), min(global_pos.x(), area.x() + area.width() - w))
        y = max(area.top(), min(global_pos.y(), area.y() + area.height() - h))
        return QPoint(x, y)

    def refresh(self, text: str = "") -> None:
        self.list.clear()
        for info in self.schema.search(text, accepts=self.filt.get("accepts"),
                                       produces=self.filt.get("produces")):
            item = QListWidgetItem(f"{info.title}    \u2014 {info.category}")
            item.setData(TYPE_ROLE, info.type)
            item.setToolTip(info.description)
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)
        # wide enough for the entries ("CLIPMergeAdd - advanced/model_merging"), within reason
        need = self.list.sizeHintForColumn(0) + 2 * self.list.frameWidth() + 28
        self.resize(max(320, min(560, need)), self.height())

    def types(self) -> list[str]:
        return [self.list.item(i).data(TYPE_ROLE) for i in range(self.list.count())]

    def accept_current(self) -> None:
        item = self.list.currentItem()
        if item is None:
            return
        self.hide()
        self.chosen.emit(item.data(TYPE_ROLE), self.scene_pos, self.filt)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if event.type() == event.Type.KeyPress and event.key() in (Qt.Key_Down, Qt.Key_Up):
            row = self.list.currentRow() + (1 if event.key() == Qt.Key_Down else -1)
            self.list.setCurrentRow(max(0, min(self.list.count() - 1, row)))
            return True
        if event.type() == event.Type.KeyPress and event.key() == Qt.Key_Escape:
            self.hide()
            return True
        return False
