"""Inline editors behave as text fields do: a click into a prompt puts the cursor where it was
clicked (it went to the end); Tab / Shift+Tab in a field commits it and edits the node's next /
previous field (Tab did nothing), Enter commits, Escape reverts."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QFontMetricsF
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QLineEdit, QPlainTextEdit

from nodegen.gui import commands
from nodegen.gui.widgets import multiline_text_rect
from tests.gui.conftest import add, click, view_point

PROMPT = "a photo of a cat on the mat"


def _prompt_node(window) -> tuple[str, object]:
    nid = add(window, "CLIPTextEncode", 0, 0)
    window.scene.push(commands.set_value(window.doc, nid, "text", PROMPT))
    return nid, window.scene.items_by_id[nid]


def test_a_click_into_a_prompt_puts_the_cursor_where_clicked(window):
    nid, item = _prompt_node(window)
    text_rect = multiline_text_rect(item.widget_rect("text"))
    before = QFontMetricsF(item.FONT).horizontalAdvance("a photo of a ")
    at = item.mapToScene(QPointF(text_rect.left() + before + 1, text_rect.top() + 5))
    click(window, at)
    editor = window.scene.editor
    assert isinstance(editor, QPlainTextEdit)
    assert editor.textCursor().position() == PROMPT.index("cat")
    QTest.keyClicks(editor, "black ")
    window.scene.commit_editor()
    assert window.doc.nodes[nid]["inputs"]["text"] == "a photo of a black cat on the mat"
    # the editor shows the text where the node drew it: the clicked spot is on the same letter
    click(window, at)
    editor = window.scene.editor
    proxy_pos = window.scene._editor_proxy.pos()
    local = item.mapFromScene(at) - proxy_pos - QPointF(editor.viewport().pos())
    assert abs(editor.cursorForPosition(local.toPoint()).position() - editor.textCursor().position()) <= 1
    window.scene.close_editor()
    # below the text: the end
    below = item.mapToScene(QPointF(text_rect.left() + 4, text_rect.bottom() - 3))
    click(window, below)
    assert window.scene.editor.textCursor().position() == len(window.doc.nodes[nid]["inputs"]["text"])


def _open_field(window, nid: str, name: str) -> None:
    item = window.scene.items_by_id[nid]
    window.scene.open_editor(item, name, item.info.input(name))
    assert isinstance(window.scene.editor, QLineEdit)


def test_tab_commits_a_field_and_edits_the_next_one(window):
    nid = add(window, "KSampler", 0, 0)
    item = window.scene.items_by_id[nid]
    typed = [s["name"] for s in item.widget_rows if s.get("widget") in ("int", "float", "seed")]
    assert typed[:3] == ["seed", "steps", "cfg"]
    window.show()
    window.view.setFocus()
    QTest.mouseMove(window.view.viewport(), view_point(window, item.mapToScene(item.widget_rect("steps").center())))
    _open_field(window, nid, "steps")
    editor = window.scene.editor
    QTest.keyClicks(editor, "33")
    QTest.keyClick(editor, Qt.Key_Tab)
    assert window.doc.nodes[nid]["inputs"]["steps"] == 33
    assert not window.search.isVisible()  # Tab stayed with the editor (not the canvas' node search)
    assert window.scene._editor_target[1] == "cfg" and window.scene.editor.text() == "8.00"
    assert window.scene.editor.selectedText() == "8.00"  # typing replaces it
    QTest.keyClicks(window.scene.editor, "5.5")
    QTest.keyClick(window.scene.editor, Qt.Key_Backtab, Qt.ShiftModifier)
    assert window.doc.nodes[nid]["inputs"]["cfg"] == 5.5
    assert window.scene._editor_target[1] == "steps"
    QTest.keyClicks(window.scene.editor, "12")
    QTest.keyClick(window.scene.editor, Qt.Key_Escape)  # reverts
    assert window.scene.editor is None and window.doc.nodes[nid]["inputs"]["steps"] == 33
    _open_field(window, nid, "steps")
    QTest.keyClicks(window.scene.editor, "21")
    QTest.keyClick(window.scene.editor, Qt.Key_Return)  # commits
    assert window.scene.editor is None and window.doc.nodes[nid]["inputs"]["steps"] == 21


def test_tab_in_a_nodes_only_field_just_commits_it(window):
    nid = add(window, "Note", 0, 0)
    item = window.scene.items_by_id[nid]
    window.scene.open_editor(item, "text", item.info.input("text"))
    QTest.keyClicks(window.scene.editor, "hello")
    QTest.keyClick(window.scene.editor, Qt.Key_Tab)
    assert window.scene.editor is None and window.doc.nodes[nid]["inputs"]["text"] == "hello"
