"""Settings > Live previews: how samplers preview their steps (the engine's preview methods, listed
as the engine names them). The choice is kept in the editor's settings and given to the engine at
start, unless ``--preview`` or NODEGEN_PREVIEW chose for this session."""

from __future__ import annotations

from PySide6.QtGui import QAction, QActionGroup

SETTINGS_KEY = "preview_method"
#: who may choose over the saved setting: the command line and the environment variable
_EXPLICIT = ("option", "NODEGEN_PREVIEW")


def restore_preview_method(window) -> None:
    """Give the engine the saved choice (a stale or unknown one is ignored)."""
    engine = window.engine
    saved = window.settings.value(SETTINGS_KEY)
    if saved and engine.env.preview_source not in _EXPLICIT:
        try:
            engine.set_preview_method(str(saved), "settings")
        except ValueError:
            window.settings.remove(SETTINGS_KEY)
    group = getattr(window, "preview_menu_group", None)
    if group is not None:
        sync_preview_menu(window, group)


def build_preview_menu(window, parent_menu) -> QActionGroup:
    """The submenu with one checkable action per method (``window.actions_by_name["preview_<m>"]``)."""
    menu = parent_menu.addMenu("Live previews")
    group = QActionGroup(window)
    group.setExclusive(True)
    for method, label in window.engine.preview_methods().items():
        act = QAction(label, window)
        act.setCheckable(True)
        act.setData(method)
        act.triggered.connect(lambda _=False, m=method: choose_preview_method(window, m))
        group.addAction(act)
        menu.addAction(act)
        window.actions_by_name[f"preview_{method}"] = act
    menu.aboutToShow.connect(lambda: sync_preview_menu(window, group))
    sync_preview_menu(window, group)
    return group


def sync_preview_menu(window, group: QActionGroup) -> None:
    current = window.engine.preview_method
    for act in group.actions():
        act.setChecked(act.data() == current)


def choose_preview_method(window, method: str) -> None:
    """Set the engine's method (runs going on take it from their next sampler) and save it."""
    window.engine.set_preview_method(method, "settings")
    window.settings.setValue(SETTINGS_KEY, method)
    window.settings.sync()
    window.statusBar().showMessage(f"Live previews: {window.engine.preview_methods()[method]}", 5000)
