"""A node's run badge ("0.02s", "cached") speaks of the last run: once the user changes the node's
inputs (or an input upstream) it no longer holds and goes away, so a changed prompt does not say
"cached" (it did, until the next run). Moving or renaming a node keeps it."""

from __future__ import annotations

from nodegen.gui import commands


def test_changing_an_input_clears_the_badges_downstream(window, chain_file):
    assert window.open_file(str(chain_file), ask=False)
    items = window.scene.items_by_id
    for nid in ("1", "2", "3"):
        items[nid].set_state("done", seconds=0.5)
    window.doc.undo_stack.push(commands.move_nodes(window.doc, {"1": (10, 10)}))
    window.doc.undo_stack.push(commands.set_field(window.doc, ["2"], "title", "Flip", "Rename"))
    assert [items[n].state for n in ("1", "2", "3")] == ["done"] * 3
    window.doc.undo_stack.push(commands.set_field(window.doc, ["2"], "mode", "bypass", "Bypass"))
    assert [items[n].state for n in ("1", "2", "3")] == ["done", None, None]
    items["2"].set_state("cached")
    items["3"].set_state("cached")
    window.doc.undo_stack.push(commands.set_value(window.doc, "1", "image", "other.png"))
    assert [items[n].state for n in ("1", "2", "3")] == [None, None, None]
    assert items["1"].seconds is None
