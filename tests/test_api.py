"""The Python API a script uses in three lines, and the incremental Engine session."""

from __future__ import annotations

from pathlib import Path

import nodegen
from nodegen.runtime.engine import Engine

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


def test_three_line_api(tmp_path):
    wf = nodegen.load(GRAPHS / "image_basics.json")
    wf.set("Half size.width", 64)
    result = nodegen.run(wf, output_dir=tmp_path)
    assert result.ok
    # the 96x96 crop at (16, 16) of the 64x64 blend is clipped to 48x48
    assert result.images[0].size == (48, 48)
    assert Path(result.paths[0]).parent == tmp_path


def test_engine_session_reruns_only_what_changed(tmp_path):
    engine = Engine(output_dir=tmp_path)
    events = []
    engine.subscribe(lambda e: events.append(e.kind))
    first = engine.run(GRAPHS / "image_basics.json")
    assert first.ok and len(first.executed) == 7
    again = engine.run(GRAPHS / "image_basics.json", set={"Blend.blend_factor": 0.9})
    assert sorted(again.executed) == ["4", "5", "6"]
    assert again.reasons["4"] == "blend_factor changed (0.35 -> 0.9)"
    assert events.count("run_finished") == 2
