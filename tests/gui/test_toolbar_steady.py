"""The toolbar's Undo and Redo keep their short names (the text grew to "Undo Add
CheckpointLoader" with each edit and shoved "Fit all" along the bar); what they would undo shows
in the tooltip, and they still undo and redo."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QToolBar

from tests.gui.conftest import add


def test_undo_redo_buttons_keep_their_place(window):
    bar = window.findChild(QToolBar, "runbar")
    fit = bar.widgetForAction(window.actions_by_name["fit_all"])
    x0 = fit.x()
    nid = add(window, "ImageInvert", 0, 0)
    undo = next(bar.widgetForAction(a) for a in bar.actions() if a.text() == "Undo")
    assert undo.isEnabled() and "ImageInvert" in undo.toolTip()
    assert fit.x() == x0
    QTest.mouseClick(undo, Qt.LeftButton)
    assert nid not in window.doc.nodes
    redo = next(bar.widgetForAction(a) for a in bar.actions() if a.text() == "Redo")
    QTest.mouseClick(redo, Qt.LeftButton)
    assert nid in window.doc.nodes
    assert fit.x() == x0
