"""GUI test fixtures: an editor window on a fresh engine (input/output folders in tmp_path, GUI
state and recovery files in tmp_path), and helpers that drive the canvas with real mouse events."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from nodegen.runtime.engine import Engine  # noqa: E402


@pytest.fixture
def gui_state(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("NODEGEN_GUI_STATE", str(state))
    return state


@pytest.fixture
def engine(tmp_path):
    (tmp_path / "input").mkdir()
    return Engine(input_dir=tmp_path / "input", output_dir=tmp_path / "output", device="cpu")


@pytest.fixture(scope="session")
def dark_app(qapp):
    from nodegen.gui.theme import apply_dark

    apply_dark(qapp)  # once: restyling is slow with many widgets
    return qapp


@pytest.fixture
def make_window(qtbot, engine, gui_state, dark_app):
    from nodegen.gui.mainwindow import MainWindow

    made = []

    def make(eng=None):
        w = MainWindow(eng or engine)
        w.ask_save_changes = lambda: "discard"
        w.ask_stop_runs = lambda question: True  # never a modal question in a test's teardown
        qtbot.addWidget(w)
        w.resize(1400, 900)
        w.show()
        qtbot.waitExposed(w)
        made.append(w)
        return w

    yield make
    for w in made:
        w.runner.shutdown()
        w.doc.undo_stack.setClean()
        w.close()
        w.deleteLater()


@pytest.fixture
def window(make_window):
    return make_window()


@pytest.fixture
def red_png(tmp_path):
    from PIL import Image

    path = tmp_path / "input" / "red.png"
    path.parent.mkdir(exist_ok=True)
    Image.new("RGB", (32, 24), (200, 40, 20)).save(path)
    return path


def chain_doc(image_path: str) -> dict:
    """LoadImage -> ImageInvert -> PreviewImage."""
    return {
        "format": "nodegen-workflow", "version": 1, "metadata": {"name": "chain"},
        "nodes": {
            "1": {"type": "LoadImage", "inputs": {"image": image_path}, "ui": {"pos": [0, 0]}},
            "2": {"type": "ImageInvert", "inputs": {"image": {"from": ["1", "image"]}}, "ui": {"pos": [320, 0]}},
            "3": {"type": "PreviewImage", "inputs": {"images": {"from": ["2", "image"]}},
                  "ui": {"pos": [640, 0]}, "x-unknown-field": {"kept": [1, 2]}},
        },
        "groups": [],
        "extra-top-level": "kept",
    }


@pytest.fixture
def chain_file(tmp_path, red_png):
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(chain_doc(str(red_png)), indent=2) + "\n", encoding="utf-8")
    return path


# -- driving the canvas ----------------------------------------------------------------------

def show_points(window, *points: QPointF) -> None:
    """Fit the view around scene points (keeping a readable zoom) so the mouse can reach them."""
    from PySide6.QtCore import QRectF

    rect = QRectF(points[0], points[0])
    for p in points[1:]:
        rect = rect.united(QRectF(p, p))
    window.view.fit_rect(rect.adjusted(-60, -60, 60, 60))


def view_point(window, scene_point: QPointF) -> QPoint:
    if not window.view.visible_scene_rect().adjusted(10, 10, -10, -10).contains(scene_point):
        show_points(window, scene_point)
    return window.view.mapFromScene(scene_point)


def port_point(window, nid: str, side: str, name: str) -> QPointF:
    """Scene position of a port."""
    return window.scene.items_by_id[nid].port_scene_pos(side, name)


def widget_point(window, nid: str, name: str, where: str = "center") -> QPointF:
    from nodegen.gui.widgets import widget_point as wp

    item = window.scene.items_by_id[nid]
    return item.mapToScene(wp(item, name, where))


def drag(window, a: QPointF, b: QPointF, steps: int = 6, button=Qt.LeftButton) -> None:
    """Press at scene point ``a``, move to ``b`` in steps, release (both kept in view)."""
    show_points(window, a, b)
    pa, pb = window.view.mapFromScene(a), window.view.mapFromScene(b)
    vp = window.view.viewport()
    QTest.mousePress(vp, button, Qt.NoModifier, pa)
    for i in range(1, steps + 1):
        QTest.mouseMove(vp, pa + (pb - pa) * (i / steps))
    QTest.mouseRelease(vp, button, Qt.NoModifier, pb)


def click(window, p: QPointF, button=Qt.LeftButton) -> None:
    """Click at a scene point."""
    QTest.mouseClick(window.view.viewport(), button, Qt.NoModifier, view_point(window, p))


def add(window, type_name: str, x: float, y: float) -> str:
    return window.add_node(type_name, QPointF(x, y))

