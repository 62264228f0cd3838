"""Ctrl+Up / Ctrl+Down in a prompt editor change the weight of words as ComfyUI does:
``(words:1.05)``, the group around the cursor or the phrase between commas, ``(words)`` as 1.1."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from nodegen.gui.prompt_weight import reweighted
from tests.gui.conftest import add, click, widget_point


def apply(text: str, start: int, end: int | None = None, up: bool = True) -> str:
    change = reweighted(text, start, start if end is None else end, up)
    if change is None:
        return text
    a, b, new = change
    return text[:a] + new + text[b:]


@pytest.mark.parametrize(("text", "cursor", "up", "expected"), [
    ("a red ball, blue sky", 3, True, "(a red ball:1.05), blue sky"),  # the phrase at the cursor
    ("a red ball, blue sky", 15, False, "a red ball, (blue sky:0.95)"),
    ("a (red ball:1.05), sky", 7, True, "a (red ball:1.1), sky"),  # inside a group: its weight
    ("a (red ball:1.05), sky", 7, False, "a (red ball:1), sky"),
    ("a (red ball), sky", 5, True, "a (red ball:1.15), sky"),  # bare parentheses weigh 1.1
    ("((deep)) sky", 4, True, "((deep:1.15)) sky"),  # the innermost group, (deep) as 1.1
    ("(x:0.02)", 2, False, "(x:0)"),  # never below zero
    ("", 0, True, ""),
])
def test_reweighted(text, cursor, up, expected):
    assert apply(text, cursor, up=up) == expected


def test_a_selection_is_weighed_as_it_is():
    text = "masterpiece, red ball"
    assert apply(text, 13, 16) == "masterpiece, (red:1.05) ball"


def test_ctrl_up_in_a_prompt_editor(window):
    nid = add(window, "CLIPTextEncode", 0, 0)
    click(window, widget_point(window, nid, "text"))
    editor = window.scene.editor
    QTest.keyClicks(editor, "a cat, night")
    cursor = editor.textCursor()
    cursor.setPosition(2)
    editor.setTextCursor(cursor)
    QTest.keyClick(editor, Qt.Key_Up, Qt.ControlModifier)
    QTest.keyClick(editor, Qt.Key_Up, Qt.ControlModifier)  # the group stays selected: goes on
    assert editor.toPlainText() == "(a cat:1.1), night"
    QTest.keyClick(editor, Qt.Key_Down, Qt.ControlModifier)
    assert editor.toPlainText() == "(a cat:1.05), night"
    window.scene.commit_editor()
    assert window.doc.nodes[nid]["inputs"]["text"] == "(a cat:1.05), night"
