"""A swept value its input refuses is reported naming the node (id and title) and the input."""

from __future__ import annotations

from pathlib import Path

from nodegen.cli import main

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


def test_bad_swept_value_names_node_title_and_input(tmp_path, capsys):
    code = main(["sweep", str(GRAPHS / "txt2img.json"), "--over", "Sampler.steps=0,1", "--out", str(tmp_path)])
    assert code == 2
    assert "node 5 (Sampler), input 'steps': value 0 is below the minimum 1" in capsys.readouterr().err
