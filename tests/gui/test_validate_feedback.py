"""Validate says what it found: with no problem it said nothing at all (the button seemed dead);
with problems it shows the Problems panel and says how many."""

from __future__ import annotations

from nodegen.gui import commands


def test_validate_reports_either_way(window, chain_file):
    assert window.open_file(str(chain_file), ask=False)
    window.actions_by_name["validate"].trigger()
    assert "no problems" in window.statusBar().currentMessage()
    window.doc.undo_stack.push(commands.disconnect(window.doc, "2", "image", None))  # now unlinked
    window.problems_dock.hide()
    window.actions_by_name["validate"].trigger()
    assert "1 problem" in window.statusBar().currentMessage()
    assert window.problems_dock.isVisible()
