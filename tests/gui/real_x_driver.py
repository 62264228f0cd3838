"""Run by tests/gui/test_real_x.py in a child process under a real X server (Xvfb): opens the
editor in a real window and drives it with xdotool (real mouse and keyboard events through the X
server, popups and focus included), then prints one JSON line with what it saw.

    DISPLAY=:99 python tests/gui/real_x_driver.py GRAPH.json SHOTS_DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def pump(app, seconds: float = 0.08) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def wait_for(app, cond, timeout: float = 3.0) -> bool:
    """Process events until ``cond()`` holds (a loaded machine may deliver X events late)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        app.processEvents()
        time.sleep(0.01)
    return True


def xdo(app, *args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=10)
    pump(app)


def drag(app, start: tuple[int, int], path: list[tuple[int, int]]) -> None:
    """Press the left button at ``start``, move through ``path``, release: one xdotool call (the
    X server queues the events in order; one process instead of one per step)."""
    moves = [arg for x, y in path for arg in ("mousemove", str(x), str(y), "sleep", "0.02")]
    xdo(app, "mousemove", *map(str, start), "mousedown", "1", *moves, "mouseup", "1")


def shot(app, folder: Path, name: str) -> None:
    """A screenshot of the whole X screen (only with NODEGEN_DRIVER_SHOTS=1: it takes a second)."""
    if not os.environ.get("NODEGEN_DRIVER_SHOTS"):
        return
    pump(app, 0.2)
    subprocess.run(["import", "-window", "root", str(folder / f"{name}.png")], check=False, timeout=20)


def main() -> int:
    graph, shots = Path(sys.argv[1]), Path(sys.argv[2])
    shots.mkdir(parents=True, exist_ok=True)
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QApplication

    from nodegen.gui.mainwindow import MainWindow
    from nodegen.gui.theme import apply_dark
    from nodegen.gui.view import FIT_MIN_ZOOM
    from nodegen.gui.widgets import widget_point
    from nodegen.runtime.engine import Engine

    app = QApplication(["nodegen"])
    apply_dark(app)
    window = MainWindow(Engine(device="cpu", input_dir=graph.parent, output_dir=shots / "out"))
    window.ask_save_changes = lambda: "discard"
    out: dict = {}
    # as `python main.py gui GRAPH` does: open, then show
    assert window.open_file(str(graph), ask=False), window.last_error
    window.show()
    wait_for(app, lambda: window.isActiveWindow() and window.view.zoom() >= FIT_MIN_ZOOM - 1e-6, 5.0)
    pump(app, 0.3)
    avail = window.screen().availableGeometry()
    out["fits_screen"] = avail.contains(window.frameGeometry())
    out["screen"] = [avail.width(), avail.height(), window.screen().devicePixelRatio()]
    out["zoom"] = window.view.zoom()
    out["zoom_ok"] = window.view.zoom() >= FIT_MIN_ZOOM - 1e-6
    mm = window.view.minimap  # it must not hide part of the graph just opened
    mm_rect = mm.geometry().translated(-window.view.viewport().x(), -window.view.viewport().y())
    out["minimap_hides_nodes"] = mm.isVisible() and any(
        window.view.mapFromScene(item.sceneBoundingRect()).boundingRect().intersects(mm_rect)
        for item in window.scene.items_by_id.values())
    if os.environ.get("NODEGEN_DRIVER_ONLY_OPEN"):
        print(json.dumps(out))
        window.runner.shutdown()
        window.close()
        return 0
    shot(app, shots, "1-opened")
    view, scene = window.view, window.scene

    dpr = window.screen().devicePixelRatio()  # xdotool speaks device pixels (QT_SCALE_FACTOR=1.5)

    def screen_of(scene_point: QPointF) -> tuple[int, int]:
        p = view.viewport().mapToGlobal(view.mapFromScene(scene_point))
        return round(p.x() * dpr), round(p.y() * dpr)

    # 1. open the model combo (a real popup takes the mouse), close it with Escape
    loader = scene.items_by_id["1"]
    x, y = screen_of(loader.mapToScene(widget_point(loader, "ckpt_name")))
    xdo(app, "mousemove", str(x), str(y))
    xdo(app, "click", "1")
    out["combo_opened"] = wait_for(app, lambda: scene.active_menu is not None and scene.active_menu.isVisible())
    shot(app, shots, "2-combo")
    # typing filters the list; "m" is the minimap's key on the canvas and must not reach it
    xdo(app, "key", "m")
    out["combo_typed"] = wait_for(app, lambda: scene.active_menu.typed == "m", 2.0)
    out["minimap_kept"] = view.minimap_wanted
    xdo(app, "key", "Escape")
    wait_for(app, lambda: QApplication.activePopupWidget() is None)
    out["drag_after_combo"] = scene.dragging
    # 2. a context menu on the prompt node, closed with Escape
    prompt = scene.items_by_id["2"]
    x, y = screen_of(prompt.mapToScene(QPointF(60, 12)))
    xdo(app, "mousemove", str(x), str(y))
    xdo(app, "click", "3")
    out["context_menu_opened"] = wait_for(app, lambda: QApplication.activePopupWidget() is not None)
    shot(app, shots, "3-context-menu")
    xdo(app, "key", "Escape")
    out["popup_left"] = not wait_for(app, lambda: QApplication.activePopupWidget() is None)
    out["drag_after_menu"] = scene.dragging
    # 3. drag the prompt node by its title with the real mouse
    start = [prompt.x(), prompt.y()]
    z = view.zoom()
    drag(app, (x, y), [(x + 20 * i, y + 12 * i) for i in range(1, 7)])
    wait_for(app, lambda: window.doc.nodes["2"]["ui"]["pos"] != start and not scene.dragging)
    moved = window.doc.nodes["2"]["ui"]["pos"]
    out["moved_by"] = [round((moved[0] - start[0]) * z * dpr), round((moved[1] - start[1]) * z * dpr)]
    out["item_matches_doc"] = [prompt.x(), prompt.y()] == moved
    shot(app, shots, "4-moved")
    # 4. undo with the keyboard: the node goes back
    xdo(app, "key", "ctrl+z")
    wait_for(app, lambda: window.doc.nodes["2"]["ui"]["pos"] == start)
    out["undo_restores"] = window.doc.nodes["2"]["ui"]["pos"] == start and [prompt.x(), prompt.y()] == start
    # 5. move again and save with Ctrl+S
    drag(app, (x, y), [(x + 25 * i, y) for i in range(1, 5)])
    xdo(app, "key", "ctrl+s")
    wait_for(app, lambda: not window.doc.modified)
    out["saved_pos"] = window.doc.nodes["2"]["ui"]["pos"]
    out["modified_after_save"] = window.doc.modified
    shot(app, shots, "5-saved")
    # 6. the node still selected, a click in the node palette, Backspace and Delete there: the
    #    palette's keys, not the canvas's (they deleted the selected nodes)
    scene.select_ids(["2"])
    tree = window.palette.tree
    first = tree.topLevelItem(0)
    r = tree.visualItemRect(first)
    p = tree.viewport().mapToGlobal(r.center())
    xdo(app, "mousemove", str(round(p.x() * dpr)), str(round(p.y() * dpr)), "click", "1")
    wait_for(app, tree.hasFocus)
    xdo(app, "key", "BackSpace", "key", "Delete")
    pump(app, 0.2)
    out["kept_after_palette_keys"] = "2" in window.doc.nodes
    # 7. back on the canvas (a click on the node) Delete deletes it, Ctrl+Z brings it back
    x, y = screen_of(prompt.mapToScene(QPointF(60, 12)))
    xdo(app, "mousemove", str(x), str(y), "click", "1")
    wait_for(app, view.hasFocus)
    xdo(app, "key", "Delete")
    out["deleted_on_canvas"] = wait_for(app, lambda: "2" not in window.doc.nodes)
    xdo(app, "key", "ctrl+z")
    out["undo_brings_back"] = wait_for(app, lambda: "2" in window.doc.nodes)
    # 8. ComfyUI's "." with nothing selected frames every node
    scene.clearSelection()
    view.zoom_by(4.0)
    xdo(app, "key", "period")
    out["period_frames_all"] = wait_for(app, lambda: all(
        view.visible_scene_rect().contains(it.sceneBoundingRect()) for it in scene.items_by_id.values()), 2.0)
    print(json.dumps(out))
    window.runner.shutdown()
    window.doc.undo_stack.setClean()
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
