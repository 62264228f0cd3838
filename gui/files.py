"""Files for the main window: new / open / save / save as, recent files, the title with the file
name and a modified marker, asking before losing changes, autosave to a recovery file and the
offer to restore it, and opening dropped workflow files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import QPoint, QSettings, QStandardPaths, QTimer
from PySide6.QtWidgets import QFileDialog, QMessageBox

from nodegen.formats.png import WORKFLOW_KEY, png_text
from nodegen.kernel.workflow import Workflow, WorkflowError, atomic_write_text

MAX_RECENT = 10
#: set for an editor started by File > New window: it opens offset from the saved place
CASCADE_ENV, CASCADE_PX = "NODEGEN_GUI_CASCADE", 40
AUTOSAVE_MS = 30_000
FILTER = "Workflows (*.json *.png *.webp);;All files (*)"


def state_dir() -> Path:
    env = os.environ.get("NODEGEN_GUI_STATE")
    if env:
        return Path(env)
    base = QStandardPaths.writableLocation(QStandardPaths.GenericConfigLocation) or str(Path.home() / ".config")
    return Path(base) / "nodegen"


def load_any(path: str | Path) -> Workflow:
    """A nodegen workflow (``.json`` or PNG), or a ComfyUI workflow imported as a new document (no
    path: saving asks where, so a ComfyUI file is never overwritten in another format)."""
    from nodegen.formats import is_native, open_any

    wf = open_any(path)
    if Path(path).suffix.lower() not in (".png", ".webp") and not is_native(path):
        wf.path = None
    return wf


def is_workflow_file(path: str) -> bool:
    """A ``.json`` file, or a PNG or (animated) WEBP with an embedded workflow (nodegen or ComfyUI)."""
    from nodegen.formats.webp import webp_text

    p = Path(path)
    if p.suffix.lower() == ".json":
        return True
    read = {".png": png_text, ".webp": webp_text}.get(p.suffix.lower())
    if read is None:
        return False
    try:
        text = read(p)
    except (ValueError, OSError):
        return False
    return WORKFLOW_KEY in text or "workflow" in text or "prompt" in text


def _owner_alive(path: Path) -> bool:
    """Is the editor that writes this recovery file still running (another open window)?"""
    try:
        pid = int(path.name.split("-")[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False  # this process: only tests open several windows in one process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FileMixin:
    def init_files(self) -> None:
        self.settings = QSettings(str(state_dir() / "gui.ini"), QSettings.IniFormat)
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start(AUTOSAVE_MS)
        self.doc.undo_stack.cleanChanged.connect(lambda _: self.update_title())
        self.doc.undo_stack.indexChanged.connect(lambda _: self.update_title())
        self.doc.pathChanged.connect(self.update_title)
        #: the ComfyUI file or PNG the open (unsaved) document was imported from
        self.imported_from: Path | None = None
        geometry = self.settings.value("geometry")
        self.geometry_restored = geometry is not None and self.restoreGeometry(geometry)
        if self.geometry_restored and os.environ.pop(CASCADE_ENV, None):
            self.move(self.pos() + QPoint(CASCADE_PX, CASCADE_PX))  # a New window: not right on top of its opener

    # -- title -------------------------------------------------------------------------
    def update_title(self) -> None:
        import shiboken6

        if not shiboken6.isValid(self.doc.undo_stack):
            return  # the window is being destroyed
        self.setWindowTitle(f"{self.display_name()}{'*' if self.doc.modified else ''} \u2014 nodegen")

    def display_name(self) -> str:
        """The open graph as the title bar and the questions name it."""
        if self.doc.path:
            return self.doc.path.name
        if self.imported_from is not None:
            return f"{self.imported_from.name} (imported)"
        return "Untitled"

    def document_name(self) -> str:
        """The open graph's name for run labels: its file's, or the one it was imported from."""
        source = self.doc.path or self.imported_from
        return source.stem if source else "Untitled"

    def suggested_save_path(self) -> str:
        """Where Save first offers to write: the file itself, or beside an imported source with
        its name (a ComfyUI ``x.json`` offers ``x.nodegen.json``, never itself)."""
        if self.doc.path:
            return str(self.doc.path)
        src = self.imported_from
        if src is None:
            return self._last_dir()
        name = f"{src.stem}.json" if src.suffix.lower() in (".png", ".webp") else f"{src.stem}.nodegen.json"
        return str(src.with_name(name))

    # -- asking ------------------------------------------------------------------------
    def ask_save_changes(self) -> str:
        """"save", "discard" or "cancel" (tests replace this)."""
        box = QMessageBox(QMessageBox.Warning, "Unsaved changes", self.save_changes_question(),
                          QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, self)
        answer = box.exec()
        return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(answer, "cancel")

    def save_changes_question(self) -> str:
        return f"Save the changes to {self.display_name()}?"

    def confirm_discard(self) -> bool:
        self.scene.commit_editor()  # text typed in an open field is an edit too (closing lost it)
        if not self.doc.modified:
            return True
        answer = self.ask_save_changes()
        if answer == "save":
            return self.save()
        return answer == "discard"

    def ask_open_path(self) -> str:
        path, _ = QFileDialog.getOpenFileName(self, "Open workflow", self._last_dir(), FILTER)
        return path

    def ask_save_path(self) -> str:
        path, _ = QFileDialog.getSaveFileName(self, "Save workflow", self.suggested_save_path(),
                                              "Workflows (*.json)")
        if path and not path.lower().endswith(".json"):
            path += ".json"
        return path

    def _last_dir(self) -> str:
        source = self.doc.path or self.imported_from
        return str(source.parent) if source else str(Path.cwd())

    # -- commands ----------------------------------------------------------------------
    def new_file(self) -> bool:
        if not self.confirm_discard():
            return False
        self.doc.new()
        self.imported_from = None
        self.after_open()
        return True

    def new_window(self, path: str | None = None) -> list[str]:
        """Open another editor window (its own process, with this session's folders and device),
        empty or on ``path``: two graphs side by side, copy and paste between them."""
        env = self.engine.env
        cmd = [sys.executable, "-c", "import sys; from nodegen.gui.app import main; sys.exit(main(sys.argv[1:]))",
               "--input-dir", str(env.input_dir), "--output-dir", str(env.output_dir),
               "--device", str(getattr(self.engine, "_device_name", "auto"))]
        for root in self.cli_roots:
            cmd += ["--models", str(root)]
        if path:
            cmd.append(str(path))
        subprocess.Popen(cmd, start_new_session=True, env={**os.environ, CASCADE_ENV: "1"})  # noqa: S603
        self.statusBar().showMessage("opening a new window\u2026", 5000)
        return cmd

    def open_file(self, path: str | None = None, ask: bool = True) -> bool:
        if ask and not self.confirm_discard():
            return False
        path = path or self.ask_open_path()
        if not path:
            return False
        try:
            wf = load_any(path)
        except (WorkflowError, ValueError, OSError) as e:
            self.show_error("Cannot open the workflow", str(e))
            return False
        imported = (wf.metadata.get("import") or {}) if wf.path is None else {}
        if Path(path).suffix.lower() in (".png", ".webp"):
            wf.path = None  # never overwrite the image with JSON
        self.imported_from = Path(path) if wf.path is None else None
        self.doc.set_workflow(wf)
        self.add_recent(path)
        # a ComfyUI workflow opens as a new document (Save asks where), not marked modified:
        # nothing was changed yet; the importer's notes go to the Problems panel
        self.after_open([f"imported from {imported.get('from')}: {n}" for n in imported.get("notes", [])])
        self.update_title()
        self.statusBar().showMessage(f"opened {path}", 5000)
        return True

    def save(self) -> bool:
        if self.doc.path is None:
            return self.save_as()
        return self._save_to(self.doc.path)

    def save_as(self, path: str | None = None) -> bool:
        path = path or self.ask_save_path()
        if not path:
            return False
        return self._save_to(Path(path))

    def _save_to(self, path: Path) -> bool:
        self.scene.commit_editor()  # Ctrl+S while typing in a field saves what was typed
        try:
            self.doc.save(path)
        except OSError as e:
            self.show_error("Cannot save", f"{path}: {e}")
            return False
        self.imported_from = None
        self.update_title()
        self.add_recent(str(path))
        self.clear_recovery()
        self.statusBar().showMessage(f"saved {path}", 5000)
        return True

    def export_comfy(self, path: str | None = None) -> bool:
        """Write the graph as a ComfyUI API prompt (what ComfyUI's "Export (API)" writes, for
        sharing with ComfyUI users); settings ComfyUI cannot express go to the Problems panel."""
        from nodegen.formats.comfy import ComfyExportError, export_api

        self.scene.commit_editor()
        warnings: list[str] = []
        try:
            api = export_api(self.doc.snapshot(), self.engine.registry, warnings)
        except (ComfyExportError, ValueError) as e:
            self.show_error("Cannot export for ComfyUI", str(e))
            return False
        path = path or self.ask_export_path()
        if not path:
            return False
        try:
            atomic_write_text(Path(path), json.dumps(api, indent=2, ensure_ascii=False) + "\n")
        except OSError as e:
            self.show_error("Cannot export", f"{path}: {e}")
            return False
        self.problems.set_problems([f"ComfyUI export: {w}" for w in warnings])
        self.statusBar().showMessage(f"exported {len(api)} ComfyUI nodes to {path}"
                                     + (f" ({len(warnings)} warning(s) in the Problems panel)" if warnings else ""), 8000)
        return True

    def ask_export_path(self) -> str:
        source = self.doc.path or self.imported_from
        start = str(source.with_name(f"{source.stem}.comfy-api.json")) if source else self._last_dir()
        path, _ = QFileDialog.getSaveFileName(self, "Export for ComfyUI (API format)", start, "JSON (*.json)")
        if path and not path.lower().endswith(".json"):
            path += ".json"
        return path

    def show_error(self, title: str, text: str) -> None:
        self.statusBar().showMessage(text.splitlines()[0] if text else title, 10000)
        if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
            self.last_error = text  # no dialogs without a display (tests, screenshots)
            return
        QMessageBox.critical(self, title, text)

    # -- recent files ------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [v for v in (value or []) if v]

    def add_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        items = [path] + [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", items[:MAX_RECENT])
        self.rebuild_recent_menu()

    def rebuild_recent_menu(self) -> None:
        menu = getattr(self, "recent_menu", None)
        if menu is None:
            return
        menu.clear()
        for p in self.recent_files():
            if Path(p).is_file():  # a file moved or deleted since is not offered (it only failed)
                menu.addAction(p, lambda p=p: self.open_file(p))
        if menu.actions():
            menu.addSeparator()
            menu.addAction("Clear the list", self.clear_recent)
        menu.setEnabled(bool(menu.actions()))

    def clear_recent(self) -> None:
        self.settings.setValue("recent", [])
        self.rebuild_recent_menu()

    # -- autosave and recovery ---------------------------------------------------------
    def recovery_path(self) -> Path:
        """This window's recovery file (one per process, so two editors never clash)."""
        return state_dir() / f"recovery-{os.getpid()}-{id(self):x}.json"

    def found_recovery(self) -> Path | None:
        """The newest recovery file another (crashed) editor left behind."""
        mine = self.recovery_path()
        files = [p for p in state_dir().glob("recovery-*.json") if p != mine and not _owner_alive(p)]
        return max(files, key=lambda p: p.stat().st_mtime) if files else None

    def autosave(self) -> bool:
        if not self.doc.modified:
            return False
        payload = {"path": str(self.doc.path) if self.doc.path else None, "workflow": self.doc.data}
        atomic_write_text(self.recovery_path(), json.dumps(payload, ensure_ascii=False))
        return True

    def clear_recovery(self) -> None:
        try:
            self.recovery_path().unlink()
        except FileNotFoundError:
            pass

    def ask_restore(self, path: Path) -> bool:
        return QMessageBox.question(
            self, "Restore unsaved work?",
            "nodegen did not close cleanly. Restore the unsaved workflow from the recovery file?") == QMessageBox.Yes

    def offer_recovery(self) -> bool:
        rec = self.found_recovery()
        if rec is None:
            return False
        try:
            payload = json.loads(rec.read_text("utf-8"))
            wf = Workflow.from_dict(payload["workflow"])
        except (OSError, ValueError, KeyError, WorkflowError):
            rec.unlink(missing_ok=True)
            return False
        restore = self.ask_restore(rec)
        rec.unlink(missing_ok=True)
        if not restore:
            return False
        wf.path = Path(payload["path"]) if payload.get("path") else None
        self.imported_from = None
        self.doc.set_workflow(wf)
        self.doc.dirty = True
        self.after_open()
        self.update_title()
        return True

    # -- drops -------------------------------------------------------------------------
    def open_dropped(self, paths: list[str]) -> bool:
        for p in paths:
            if is_workflow_file(p):
                return self.open_file(p)
        return False
