"""A node's shown text (its run's ui "text", e.g. PreviewAny's value) appears in its tooltip after a
run and after a cached re-run."""

from __future__ import annotations

import json


def test_preview_any_text_shows_on_the_node(window, tmp_path, qtbot):
    doc = {"format": "nodegen-workflow", "version": 1, "metadata": {"name": "preview"},
           "nodes": {"1": {"type": "String", "inputs": {"value": "a <b> & c"}, "ui": {"pos": [0, 0]}},
                     "2": {"type": "CaseConverter", "inputs": {"string": {"from": ["1", "value"]}, "mode": "UPPERCASE"},
                           "ui": {"pos": [320, 0]}},
                     "3": {"type": "PreviewAny", "inputs": {"source": {"from": ["2", "text"]}},
                           "ui": {"pos": [640, 0]}}},
           "groups": []}
    path = tmp_path / "preview.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert window.open_file(str(path), ask=False)
    for _ in range(2):  # a run, then a cached one
        assert window.run_graph()
        qtbot.waitUntil(lambda: not window.runner.busy and not window.runner.pending(), timeout=60000)
        assert window.last_status == "ok"
        item = window.scene.items_by_id["3"]
        assert item.shown_text == ["A <B> & C"]
        assert "<pre>A &lt;B&gt; &amp; C</pre>" in item.toolTip()
    assert window.scene.items_by_id["3"].state == "cached"
