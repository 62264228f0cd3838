"""The canvas view: grid, zoom to the cursor, pan (middle drag or space+drag), rubber band,
fit all / fit selection, a minimap, and drops (node types from the palette, image files)."""

from __future__ import annotations

import math

from PySide6.QtCore import QLineF, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QFrame, QGraphicsView, QWidget

from . import theme
from .node_paint import DETAIL_LOD

NODE_MIME = "application/x-nodegen-node-type"
MIN_ZOOM, MAX_ZOOM = 0.1, 4.0
#: Fitting never zooms out below this (port names and widgets are drawn from DETAIL_LOD on, and
#: are comfortable to read from here); a graph bigger than the view is shown from its start and
#: panned to.
FIT_MIN_ZOOM = max(DETAIL_LOD, 0.7)
FIT_MAX_ZOOM = 1.5
GRID = 20
#: the minimap shows only on a canvas this many times its size (smaller, it hid the graph)
MINIMAP_ROOM = 3


class Minimap(QWidget):
    """An overview of the whole graph with the visible area; click or drag to move there."""

    def __init__(self, view: GraphView) -> None:
        super().__init__(view)
        self.view = view
        self.resize(180, 110)
        self.setCursor(Qt.PointingHandCursor)

    def _mapping(self):
        scene = self.view.scene()
        rect = scene.nodes_rect().united(self.view.visible_scene_rect()).adjusted(-50, -50, 50, 50)
        s = min(self.width() / max(rect.width(), 1), self.height() / max(rect.height(), 1))
        return rect, s

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(20, 21, 24, 220))
        p.setPen(QPen(QColor("#44464c")))
        p.drawRect(self.rect().adjusted(0, 0, -1, -1))
        rect, s = self._mapping()
        p.setPen(Qt.NoPen)
        for item in self.view.scene().items_by_id.values():
            r = item.sceneBoundingRect()
            p.setBrush(theme.category_color(item.info.category).lighter(130))
            p.drawRect(QRectF((r.x() - rect.x()) * s, (r.y() - rect.y()) * s, max(2, r.width() * s),
                              max(2, r.height() * s)))
        v = self.view.visible_scene_rect()
        p.setPen(QPen(QColor("#e8c547"), 1))
        p.setBrush(Qt.NoBrush)
        p.drawRect(QRectF((v.x() - rect.x()) * s, (v.y() - rect.y()) * s, v.width() * s, v.height() * s))

    def _go(self, pos) -> None:
        self.view._user_moved_view()
        rect, s = self._mapping()
        self.view.centerOn(QPointF(rect.x() + pos.x() / s, rect.y() + pos.y() / s))

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self._go(event.position())

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if event.buttons() & Qt.LeftButton:
            self._go(event.position())


class GraphView(QGraphicsView):
    #: a node type was dropped from the palette: (type name, scene pos)
    nodeTypeDropped = Signal(str, QPointF)
    #: files were dropped on the canvas: (paths, scene pos)
    filesDropped = Signal(list, QPointF)
    #: double-click on empty canvas or Tab: open the quick search here
    searchRequested = Signal(QPointF)
    zoomChanged = Signal(float)
    #: Escape pressed on the canvas with nothing else to cancel (the window may cancel a run)
    escapePressed = Signal()

    def __init__(self, scene, parent=None) -> None:
        super().__init__(scene, parent)
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing | QPainter.SmoothPixmapTransform)
        self.setViewportUpdateMode(QGraphicsView.SmartViewportUpdate)
        self.setOptimizationFlags(QGraphicsView.DontSavePainterState)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.AnchorViewCenter)
        self.setDragMode(QGraphicsView.RubberBandDrag)
        self.setRubberBandSelectionMode(Qt.IntersectsItemShape)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setFrameShape(QFrame.NoFrame)
        self.setAcceptDrops(True)
        self.setBackgroundBrush(theme.CANVAS_BG)
        self.setCacheMode(QGraphicsView.CacheBackground)
        self._pan = None
        self._space = False
        #: a fit asked for before the view had its final size: re-done on each resize until the
        #: user zooms, pans or clicks (the window is shown, laid out, resized by the desktop)
        self._fit_pending = False
        self.minimap = Minimap(self)
        #: the user's choice (M); the minimap also steps aside while the canvas is too small for it
        self.minimap_wanted = True
        self._place_minimap()
        scene.changed.connect(lambda _=None: self.minimap.update())
        self._was_empty = not scene.items_by_id
        for signal in (scene.doc.nodesAdded, scene.doc.nodesRemoved, scene.doc.reset):
            signal.connect(self._emptiness_changed)

    # -- geometry ----------------------------------------------------------------------
    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, z: float, anchor: QPointF | None = None) -> None:
        z = max(MIN_ZOOM, min(MAX_ZOOM, z))
        factor = z / self.zoom()
        if anchor is not None:
            old = self.transformationAnchor()
            self.setTransformationAnchor(QGraphicsView.NoAnchor)
            before = self.mapToScene(anchor.toPoint())
            self.scale(factor, factor)
            after = self.mapToScene(anchor.toPoint())
            d = after - before
            self.translate(d.x(), d.y())
            self.setTransformationAnchor(old)
        else:
            self.scale(factor, factor)
        self.zoomChanged.emit(self.zoom())
        self.minimap.update()

    def zoom_by(self, factor: float | None) -> None:
        """Zoom in/out by ``factor`` (None: actual size), as the user asked."""
        self._user_moved_view()
        self.set_zoom(1.0 if factor is None else self.zoom() * factor)

    def visible_scene_rect(self) -> QRectF:
        return self.mapToScene(self.viewport().rect()).boundingRect()

    def fit_rect(self, rect: QRectF, floor: float = FIT_MIN_ZOOM) -> None:
        """Show ``rect`` as large as fits (at most FIT_MAX_ZOOM); never below ``floor``: then
        the rect's start (left/top) is shown, centred along the axes where it fits."""
        if rect.isNull() or rect.isEmpty():
            return
        rect = rect.adjusted(-40, -40, 40, 40)
        vp = self.viewport().rect()
        z = min(vp.width() / rect.width(), vp.height() / rect.height())
        z = max(floor, min(FIT_MAX_ZOOM, z))
        self.set_zoom(z)
        w, h = vp.width() / z, vp.height() / z
        cx = rect.center().x() if rect.width() <= w else rect.left() + w / 2
        cy = rect.center().y() if rect.height() <= h else rect.top() + h / 2
        self.centerOn(QPointF(cx, cy))
        self.zoomChanged.emit(self.zoom())

    def fit_all(self) -> None:
        """Fit the graph at a readable zoom (opening a file): a wide graph is shown from its start."""
        self.fit_rect(self.scene().nodes_rect())

    def show_all(self) -> None:
        """The user's "Fit all": every node in sight, zooming out below the readable zoom if the
        graph needs it (it used to stop there and leave the rest of a wide graph out of view)."""
        self._user_moved_view()
        self.fit_rect(self.scene().nodes_rect(), floor=MIN_ZOOM)

    def request_fit(self) -> None:
        """Fit all now if the view is shown, and again whenever it is resized until the user
        moves the view (opening a graph before the window is shown and laid out)."""
        self._fit_pending = True
        if self.isVisible():
            self.fit_all()

    def _user_moved_view(self) -> None:
        self._fit_pending = False

    def fit_selection(self) -> None:
        """Fit the selected nodes; with none selected, fit all of them (ComfyUI's "." key)."""
        ids = self.scene().selected_ids()
        if not ids:
            self.show_all()
            return
        self._user_moved_view()
        self.fit_rect(self.scene().nodes_rect(set(ids)))

    def cursor_scene_pos(self) -> QPointF:
        p = self.mapFromGlobal(self.cursor().pos())
        if not self.viewport().rect().contains(p):
            return self.visible_scene_rect().center()
        return self.mapToScene(p)

    def _place_minimap(self) -> None:
        mm = self.minimap
        mm.move(self.width() - mm.width() - 10, self.height() - mm.height() - 10)
        vp = self.viewport().size()
        room = vp.width() >= MINIMAP_ROOM * mm.width() and vp.height() >= MINIMAP_ROOM * mm.height()
        mm.setVisible(self.minimap_wanted and room)

    def toggle_minimap(self) -> None:
        self.minimap_wanted = not self.minimap_wanted
        self._place_minimap()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._place_minimap()
        if self._fit_pending and self.isVisible():
            self.fit_all()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if self._fit_pending:  # after the window's layout has run
            QTimer.singleShot(0, self, lambda: self._fit_pending and self.fit_all())

    # -- painting ----------------------------------------------------------------------
    def drawBackground(self, painter, rect: QRectF) -> None:  # noqa: N802
        painter.fillRect(rect, theme.CANVAS_BG)
        z = self.zoom()
        if z < 0.3:
            return
        painter.setRenderHint(QPainter.Antialiasing, False)  # crisp 1 px lines, and much faster
        for step, col in ((GRID, theme.GRID_MINOR), (GRID * 5, theme.GRID_MAJOR)):
            if step * z < 12:
                continue
            painter.setPen(QPen(col, 0))
            x0 = math.floor(rect.left() / step) * step
            y0 = math.floor(rect.top() / step) * step
            nx = int((rect.right() - x0) / step) + 1
            ny = int((rect.bottom() - y0) / step) + 1
            lines = [QLineF(x0 + i * step, rect.top(), x0 + i * step, rect.bottom()) for i in range(nx)]
            lines += [QLineF(rect.left(), y0 + j * step, rect.right(), y0 + j * step) for j in range(ny)]
            painter.drawLines(lines)
        painter.setRenderHint(QPainter.Antialiasing, True)

    def empty_hint(self) -> str:
        """What an empty canvas says to a newcomer (nothing once there is a node)."""
        if self.scene().items_by_id:
            return ""
        return ("Double-click or press Tab to add a node\n"
                "or drag one from the Nodes panel \u2022 Ctrl+O opens a workflow \u2022 F1: keys and mouse")

    def _emptiness_changed(self, _=None) -> None:
        """The first node came or the last went: the hint is drawn or wiped whole (only the new
        node's area was repainted, leaving the hint half drawn)."""
        empty = not self.scene().items_by_id
        if empty != self._was_empty:
            self._was_empty = empty
            self.viewport().update()

    def drawForeground(self, painter, rect: QRectF) -> None:  # noqa: N802
        hint = self.empty_hint()
        if not hint:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(theme.PLACEHOLDER)
        painter.drawText(self.viewport().rect(), Qt.AlignCenter, hint)
        painter.restore()

    # -- input -------------------------------------------------------------------------
    def wheelEvent(self, event) -> None:  # noqa: N802
        delta = event.angleDelta().y()
        if delta == 0:
            return
        self._user_moved_view()
        self.set_zoom(self.zoom() * (1.0015 ** delta), event.position())

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self._user_moved_view()
        if event.button() == Qt.MiddleButton or (event.button() == Qt.LeftButton and self._space):
            self._pan = event.position()
            self.viewport().setCursor(Qt.ClosedHandCursor)
            event.accept()
            return
        if event.button() == Qt.LeftButton and event.modifiers() & Qt.ShiftModifier \
                and not self.items(event.position().toPoint()):
            # Shift+drag on empty canvas adds to the selection, as Ctrl does (it replaced it)
            event.setModifiers(event.modifiers() | Qt.ControlModifier)
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._pan is not None:
            d = event.position() - self._pan
            self._pan = event.position()
            z = self.zoom()
            self.setTransformationAnchor(QGraphicsView.NoAnchor)
            self.translate(d.x() / z, d.y() / z)
            self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
            self.minimap.update()
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._pan is not None and event.button() in (Qt.MiddleButton, Qt.LeftButton):
            self._pan = None
            self.viewport().setCursor(Qt.OpenHandCursor if self._space else Qt.ArrowCursor)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        p = self.mapToScene(event.position().toPoint())
        if not self.items(event.position().toPoint()):
            self.searchRequested.emit(p)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        scene = self.scene()
        if scene.editor is not None:
            super().keyPressEvent(event)
            return
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.OpenHandCursor)
            event.accept()
            return
        if event.key() == Qt.Key_Tab:
            self.searchRequested.emit(self.cursor_scene_pos())
            event.accept()
            return
        if event.key() == Qt.Key_Escape:
            if scene.drag_info() is not None:
                scene.cancel_wire()
            else:
                self.escapePressed.emit()
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.viewport().setCursor(Qt.ArrowCursor)
        super().keyReleaseEvent(event)

    def focusNextPrevChild(self, forward: bool) -> bool:  # noqa: N802 - keep Tab for the search
        return False

    # -- drops -------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        md = event.mimeData()
        if md.hasFormat(NODE_MIME) or md.hasUrls():
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        md = event.mimeData()
        if md.hasFormat(NODE_MIME) or md.hasUrls():
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        md = event.mimeData()
        pos = self.mapToScene(event.position().toPoint())
        self.setFocus()  # the drag began elsewhere (the palette): the keys now belong here
        if md.hasFormat(NODE_MIME):
            self.nodeTypeDropped.emit(bytes(md.data(NODE_MIME)).decode(), pos)
            event.acceptProposedAction()
        elif md.hasUrls():
            paths = [u.toLocalFile() for u in md.urls() if u.isLocalFile()]
            self.filesDropped.emit(paths, pos)
            event.acceptProposedAction()
        else:
            super().dropEvent(event)
