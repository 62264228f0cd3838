"""The main window: the canvas, the docks (palette, problems, image viewer, undo history), the
menus with their shortcuts, and the status bar (messages, run state, device and memory)."""

from __future__ import annotations

import html

import shiboken6
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence, QPixmapCache
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QLabel,
    QMainWindow,
    QTextBrowser,
    QUndoView,
    QVBoxLayout,
)

from . import theme  # noqa: F401 - colours used by the items
from .document import Document
from .edit_actions import EditMixin
from .files import FileMixin
from .gallery import Gallery
from .model_settings import ModelSettingsDialog, flag_missing_models, rescan, session_roots
from .palette import Palette, QuickSearch
from .panels import DeviceStatus, ImageViewer, ProblemsPanel
from .preview_settings import build_preview_menu, restore_preview_method
from .queue_panel import QueuePanel
from .run_view import RunMixin
from .runner import RunController
from .scene import GraphScene
from .schema import Schema
from .view import FIT_MIN_ZOOM, GraphView

#: The window's size on a screen with room for it (logical pixels); smaller screens get less.
DEFAULT_SIZE = (1400, 900)


def fitted_size(width: int, height: int, available: QRect) -> tuple[int, int]:
    """``width`` x ``height`` shrunk to leave room for the window frame on ``available`` (a
    screen's available geometry in logical pixels, so 1.5x scaling is taken into account)."""
    return min(width, int(available.width() * 0.94)), min(height, int(available.height() * 0.9))


class MainWindow(FileMixin, EditMixin, RunMixin, QMainWindow):
    def __init__(self, engine, parent=None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.cli_roots = session_roots(engine.env.paths)  # --models: kept across rescans
        QPixmapCache.setCacheLimit(max(QPixmapCache.cacheLimit(), 256 * 1024))  # node/wire caches
        self.schema = Schema.from_engine(engine)
        self.doc = Document(self)
        self.doc.pathChanged.connect(self._workflow_dir_changed)
        self.scene = GraphScene(self.doc, self.schema, self, resolve_file=engine.env.resolve_file)
        self.view = GraphView(self.scene, self)
        self.setCentralWidget(self.view)
        self.runner = RunController(engine, self)
        self.search = QuickSearch(self.schema, self)
        self.last_error = ""
        self._build_docks()
        self._build_status()
        self._build_actions()
        self.init_files()
        restore_preview_method(self)
        self.init_run()
        self._connect()
        self.setAcceptDrops(True)
        if not self.geometry_restored:
            self.resize(*DEFAULT_SIZE)
        self.fit_to_screen()
        self.rebuild_recent_menu()
        self.update_title()
        self.update_run_label()
        self.view.setFocus()  # the canvas takes the keys first

    # -- construction ------------------------------------------------------------------
    def _dock(self, title: str, widget, area, name: str) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        self.palette = Palette(self.schema)
        self.palette_dock = self._dock("Nodes", self.palette, Qt.LeftDockWidgetArea, "palette")
        self.history = QUndoView(self.doc.undo_stack)
        self.history.setEmptyLabel("<opened>")
        self.history_dock = self._dock("History", self.history, Qt.LeftDockWidgetArea, "history")
        self.viewer = ImageViewer()
        self.viewer_dock = self._dock("Image", self.viewer, Qt.RightDockWidgetArea, "viewer")
        self.problems = ProblemsPanel()
        self.problems_dock = self._dock("Problems", self.problems, Qt.BottomDockWidgetArea, "problems")
        self.queue_panel = QueuePanel(self.runner)
        self.queue_dock = self._dock("Queue", self.queue_panel, Qt.RightDockWidgetArea, "queue")
        self.gallery = Gallery()
        self.gallery_dock = self._dock("Gallery", self.gallery, Qt.RightDockWidgetArea, "gallery")
        self.tabifyDockWidget(self.viewer_dock, self.gallery_dock)
        self.tabifyDockWidget(self.gallery_dock, self.queue_dock)
        self.tabifyDockWidget(self.palette_dock, self.history_dock)
        self.palette_dock.raise_()
        self.viewer_dock.raise_()
        self._docks_sized = False

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._docks_sized:  # give the canvas the room (docks only know sizes once shown)
            self._docks_sized = True
            w = self.width()
            self.resizeDocks([self.palette_dock, self.viewer_dock], [max(180, w // 7), max(220, w // 5)],
                             Qt.Horizontal)
            self.resizeDocks([self.problems_dock], [90], Qt.Vertical)

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.run_label = QLabel()
        self.zoom_label = QLabel("100%")
        self.device_status = DeviceStatus(self.engine)
        for w in (self.run_label, self.zoom_label, self.device_status):
            sb.addPermanentWidget(w)

    def _action(self, menu, text: str, slot, shortcut=None, name: str | None = None,
                canvas: bool = False) -> QAction:
        """A menu action; ``canvas``: its keys act only while the canvas has the focus (Delete in
        the palette or the queue must not delete the selected nodes), the menu works anywhere."""
        act = QAction(text, self)
        if shortcut is not None:
            keys = shortcut if isinstance(shortcut, list) else [shortcut]
            act.setShortcuts([QKeySequence(k) for k in keys])
        act.triggered.connect(lambda _=False: slot())
        if canvas:
            act.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            self.view.addAction(act)
        else:
            act.setShortcutContext(Qt.WindowShortcut)
        menu.addAction(act)
        self.actions_by_name[name or text] = act
        return act

    def _build_actions(self) -> None:
        self.actions_by_name: dict[str, QAction] = {}
        mb = self.menuBar()
        m = mb.addMenu("&File")
        a = self._action
        a(m, "New", self.new_file, QKeySequence.New, "new")
        a(m, "New window", lambda: self.new_window(), "Ctrl+Shift+N", "new_window")
        a(m, "Open\u2026", lambda: self.open_file(), QKeySequence.Open, "open")
        self.recent_menu = m.addMenu("Open recent")
        self.file_menu = m
        m.aboutToShow.connect(self.rebuild_recent_menu)  # files moved or deleted meanwhile drop out
        a(m, "Save", self.save, QKeySequence.Save, "save")
        a(m, "Save as\u2026", lambda: self.save_as(), QKeySequence.SaveAs, "save_as")
        a(m, "Export for ComfyUI (API)\u2026", lambda: self.export_comfy(), None, "export_comfy")
        m.addSeparator()
        a(m, "Quit", self.close, QKeySequence.Quit, "quit")
        m = mb.addMenu("&Edit")
        undo = self.doc.undo_stack.createUndoAction(self, "Undo")
        undo.setShortcut(QKeySequence.Undo)
        redo = self.doc.undo_stack.createRedoAction(self, "Redo")
        redo.setShortcuts([QKeySequence.Redo, QKeySequence("Ctrl+Y")])
        for act, step in ((undo, self.doc.undo_stack.undo), (redo, self.doc.undo_stack.redo)):
            # typing in an open field is an edit: Undo from the toolbar or the menu undoes that
            # first (it undid the step before and dropped what was typed)
            act.triggered.disconnect()
            act.triggered.connect(lambda _=False, step=step: (self.scene.commit_editor(), step()))
            m.addAction(act)
        self.actions_by_name.update(undo=undo, redo=redo)
        m.addSeparator()
        a(m, "Cut", self.cut, QKeySequence.Cut, "cut", canvas=True)
        a(m, "Copy", self.copy, QKeySequence.Copy, "copy", canvas=True)
        a(m, "Paste", lambda: self.paste(), QKeySequence.Paste, "paste", canvas=True)
        a(m, "Paste with input links", lambda: self.paste(keep_links=True), "Ctrl+Shift+V", "paste_links",
          canvas=True)
        a(m, "Duplicate", self.duplicate, "Ctrl+D", "duplicate", canvas=True)
        a(m, "Delete", self.delete_selected, [QKeySequence.Delete, "Backspace"], "delete", canvas=True)
        a(m, "Select all", lambda: [i.setSelected(True) for i in self.scene.items_by_id.values()],
          QKeySequence.SelectAll, "select_all", canvas=True)
        m.addSeparator()
        a(m, "Add node\u2026", lambda: self.open_search(self.view.cursor_scene_pos()), "Ctrl+Space", "add_node", canvas=True)
        a(m, "Rename", self.rename_selected, "F2", "rename", canvas=True)
        a(m, "Bypass", lambda: self.toggle_mode("bypass"), "Ctrl+B", "bypass", canvas=True)
        a(m, "Mute", lambda: self.toggle_mode("muted"), "Ctrl+M", "mute", canvas=True)
        a(m, "Collapse / expand", self.toggle_collapse, "Alt+C", "collapse", canvas=True)
        a(m, "Group selection", self.group_selection, "Ctrl+G", "group", canvas=True)
        al = m.addMenu("Align")
        a(al, "Left edges", lambda: self.align("left"), "Ctrl+Shift+Left", "align_left", canvas=True)
        a(al, "Top edges", lambda: self.align("top"), "Ctrl+Shift+Up", "align_top", canvas=True)
        a(al, "Distribute horizontally", lambda: self.align("hdist"), "Ctrl+Shift+H", "dist_h", canvas=True)
        a(al, "Distribute vertically", lambda: self.align("vdist"), "Ctrl+Alt+V", "dist_v", canvas=True)
        m = mb.addMenu("&View")
        a(m, "Fit all", self.view.show_all, "Home", "fit_all", canvas=True)
        a(m, "Fit selection (all if none)", self.view.fit_selection, ["F", "."], "fit_selection", canvas=True)
        a(m, "Zoom in", lambda: self.view.zoom_by(1.25), [QKeySequence.ZoomIn, "Alt+="], "zoom_in")
        a(m, "Zoom out", lambda: self.view.zoom_by(1 / 1.25), [QKeySequence.ZoomOut, "Alt+-"], "zoom_out")
        a(m, "Actual size", lambda: self.view.zoom_by(None), "Ctrl+0", "zoom_reset")
        a(m, "Minimap", self.view.toggle_minimap, "M", "minimap", canvas=True)
        m.addSeparator()
        for dock in (self.palette_dock, self.history_dock, self.viewer_dock, self.gallery_dock, self.queue_dock,
                     self.problems_dock):
            m.addAction(dock.toggleViewAction())
        m = mb.addMenu("&Run")
        a(m, "Run", self.run_graph, ["Ctrl+Return", "Ctrl+Enter"], "run")
        a(m, "Run first in the queue", lambda: self.run_graph(first=True), ["Ctrl+Shift+Return", "Ctrl+Shift+Enter"],
          "run_first")
        # ComfyUI's keys: Ctrl+Alt+Enter interrupts (it opened the sweep dialog here, the run went on)
        self.cancel_action = a(m, "Cancel", self.cancel_run, ["Ctrl+Alt+Return", "Ctrl+Alt+Enter"], "cancel")
        a(m, "Cancel all", self.cancel_all, None, "cancel_all")
        a(m, "Sweep\u2026", lambda: self.open_sweep_dialog(), "Ctrl+Alt+S", "sweep")
        a(m, "Validate", self.validate_and_report, "F7", "validate")
        a(m, "Refresh node list (model files, choices)", self.rescan_models, "R", "refresh", canvas=True)
        m = mb.addMenu("&Settings")
        a(m, "Model folders…", self.model_settings, None, "model_settings")
        a(m, "Rescan model folders", self.rescan_models, None, "rescan_models")
        self.preview_menu_group = build_preview_menu(self, m)
        m = mb.addMenu("&Help")
        a(m, "Keyboard and mouse", self.show_shortcuts, "F1", "shortcuts")
        bar = self.addToolBar("Run")
        bar.setObjectName("runbar")
        bar.setMovable(False)
        for key in ("run", "cancel", "validate"):
            bar.addAction(self.actions_by_name[key])
        bar.addSeparator()
        for key in ("undo", "redo"):  # a steady "Undo" button; what it undoes is in its tooltip
            bar.addAction(self._steady_proxy(self.actions_by_name[key], key.capitalize()))
        bar.addAction(self.actions_by_name["fit_all"])
        self.toolbar = bar
        self.actions_by_name["run"].setToolTip("Run the graph (Ctrl+Enter); runs queue up")
        self.actions_by_name["cancel"].setToolTip("Cancel the running job; queued ones go on "
                                                  "(Ctrl+Alt+Enter, or Esc on the canvas)")

    def _steady_proxy(self, act: QAction, text: str) -> QAction:
        """A toolbar twin of ``act`` whose text stays ``text`` (the undo action's text grows with
        each edit, "Undo Add CheckpointLoader", and pushed the buttons after it about)."""
        proxy = QAction(text, self)
        proxy.triggered.connect(act.trigger)

        def follow() -> None:
            if not (shiboken6.isValid(proxy) and shiboken6.isValid(act)):
                return  # the window is being destroyed
            proxy.setEnabled(act.isEnabled())
            proxy.setToolTip(act.text())
        act.changed.connect(follow)
        follow()
        return proxy

    def _connect(self) -> None:
        self.palette.activated.connect(self.add_from_palette)
        self.search.chosen.connect(lambda t, p, f: self.add_from_search(t, p, f))
        self.view.nodeTypeDropped.connect(lambda t, p: self.add_node(t, p))
        self.view.filesDropped.connect(self.files_dropped)
        self.view.searchRequested.connect(lambda p: self.open_search(p))
        self.view.zoomChanged.connect(lambda z: self.zoom_label.setText(f"{z * 100:.0f}%"))
        self.view.setContextMenuPolicy(Qt.CustomContextMenu)
        self.view.customContextMenuRequested.connect(
            lambda p: self.canvas_menu(p).popup(self.view.viewport().mapToGlobal(p)))
        self.scene.wireDropped.connect(lambda p, f: self.open_search(p, f))
        self.scene.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.scene.imageActivated.connect(self.show_in_viewer)
        self.problems.nodeActivated.connect(self.focus_node)
        self.view.escapePressed.connect(self.escape_pressed)
        self.gallery.openWorkflow.connect(lambda path: self.open_file(path))

    def _workflow_dir_changed(self) -> None:
        """Relative image paths are also looked up beside the workflow file (as the CLI does)."""
        if hasattr(self.engine.env, "workflow_dir"):
            self.engine.env.workflow_dir = self.doc.path.resolve().parent if self.doc.path else None

    def fit_to_screen(self) -> None:
        """Keep the window on its screen: not larger than the available area, and inside it."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        avail = screen.availableGeometry()
        w, h = fitted_size(self.width(), self.height(), avail)
        if (w, h) != (self.width(), self.height()):
            self.resize(w, h)
        frame = self.frameGeometry()
        if not avail.contains(frame):
            self.move(avail.x() + max(0, (avail.width() - frame.width()) // 2),
                      avail.y() + max(0, (avail.height() - frame.height()) // 2))

    # -- misc --------------------------------------------------------------------------
    def after_open(self, notes: list[str] | None = None) -> None:
        self.node_images.clear()
        self.problems.clear()
        self.viewer.set_images([])
        self.viewer_node = None
        self.view.request_fit()
        self.show_missing_models(notes)
        self.view.setFocus()  # the keys go to the graph just opened

    # -- model folders -------------------------------------------------------------------
    def show_missing_models(self, notes: list[str] | None = None) -> list:
        """Mark the inputs naming files that are not found and list them (with ``notes``, e.g.
        an importer's) in the Problems panel, right when a graph opens."""
        missing = flag_missing_models(self)
        shown = list(notes or []) + missing
        self.problems.set_problems(shown)
        if missing:
            self.problems_dock.show()
            self.statusBar().showMessage(f"{len(missing)} file(s) not found: see the Problems panel; "
                                         "Settings > Model folders adds the folders that hold them", 15000)
        return missing

    def model_settings(self) -> None:
        dialog = ModelSettingsDialog(self)
        if dialog.exec():
            dialog.save()
            self.rescan_models()

    def rescan_models(self) -> None:
        """Re-read the model folders (config file, NODEGEN_MODELS) and refresh choices and marks."""
        rescan(self.engine, self.cli_roots)
        self.refresh_schema()
        self.show_missing_models()

    def focus_node(self, nid: str) -> None:
        item = self.scene.items_by_id.get(nid)
        if item is not None:
            self.scene.select_ids([nid])
            if self.view.zoom() < FIT_MIN_ZOOM:  # zoomed far out its inputs cannot be read
                self.view.zoom_by(1.0 / self.view.zoom())
            self.view.centerOn(item)
            self.view.setFocus()

    def refresh_schema(self) -> None:
        """Re-read the node schema (dynamic choices such as model files and input images)."""
        self.schema = Schema.from_engine(self.engine)
        self.scene.set_schema(self.schema)
        self.palette.set_schema(self.schema)
        self.search.schema = self.schema
        self.statusBar().showMessage("node list refreshed", 3000)

    def shortcut_rows(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(what, keys) for every menu action with keys, and (what, how) for the mouse."""
        keys = [(act.text().replace("&", ""), ", ".join(s.toString(QKeySequence.NativeText) for s in act.shortcuts()))
                for act in self.actions_by_name.values() if act.shortcuts()]
        keys.append(("Cancel the running job", "Esc (on the canvas)"))
        keys.append(("Weight of words in a prompt", "Ctrl+Up / Ctrl+Down while typing"))
        keys.append(("Next / previous field of the node", "Tab / Shift+Tab while typing (Enter commits, "
                                                          "Esc reverts a one-line field)"))
        mouse = [("Add node", "double-click the canvas or Tab"), ("Pan", "middle drag or Space + drag"),
                 ("Zoom", "wheel (to the cursor)"),
                 ("Select", "click, Shift/Ctrl-click, drag a rubber band (Shift/Ctrl+drag adds)"),
                 ("Connect", "drag from a port to a port or onto a node; drop on empty canvas to search"),
                 ("Move / remove a wire", "drag it off its input; right-click it to delete"),
                 ("Reroute", "double-click a wire"),
                 ("Move all wires of an output", "Shift + drag it onto another output"),
                 ("Combo lists", "type to filter them, Enter picks"),
                 ("Groups", "click a group's title to select it (Delete removes the frame, not the nodes); "
                            "drag its corner grip to resize it"),
                 ("Widgets", "drag numbers left/right; click to type; right-click a node for more"),
                 ("Drop files", "a workflow .json/.png opens; an image makes a LoadImage node, or goes into "
                                "the image input of the node it is dropped on")]
        return keys, mouse

    def shortcut_text(self) -> str:
        keys, mouse = self.shortcut_rows()
        return "\n".join(f"{what}: {how}" for what, how in keys + mouse)

    def show_shortcuts(self) -> None:
        """The keys and the mouse in three columns, sized to the screen (a message box with one
        long column ran past the bottom of a laptop screen, its OK button out of reach)."""
        keys, mouse = self.shortcut_rows()

        def table(rows, title: str) -> str:
            cells = "".join(f"<tr><td style='color:#9aa0a6;padding-right:10px'>{html.escape(w)}</td>"
                            f"<td><b>{html.escape(h)}</b></td></tr>" for w, h in rows)
            return f"<h3>{title}</h3><table cellspacing=2>{cells}</table>"
        half = (len(keys) + 1) // 2
        page = ("<table cellspacing=12><tr>"
                f"<td valign=top>{table(keys[:half], 'Keys')}</td>"
                f"<td valign=top>{table(keys[half:], '&nbsp;')}</td>"
                f"<td valign=top width=460>{table(mouse, 'Mouse')}</td></tr></table>")
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard and mouse")
        browser = QTextBrowser()
        browser.setHtml(page)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(dialog.close)
        lay = QVBoxLayout(dialog)
        lay.addWidget(browser)
        lay.addWidget(buttons)
        avail = (self.screen() or QGuiApplication.primaryScreen()).availableGeometry()
        dialog.resize(min(1320, int(avail.width() * 0.92)), min(600, int(avail.height() * 0.85)))
        dialog.setModal(False)
        dialog.show()
        self._shortcut_box = dialog

    # -- window events -----------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.open_dropped(paths)
            event.acceptProposedAction()

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self.confirm_stop_runs() or not self.confirm_discard():
            event.ignore()
            return
        self.runner.shutdown()
        self.clear_recovery()
        self.settings.setValue("geometry", self.saveGeometry())
        event.accept()
