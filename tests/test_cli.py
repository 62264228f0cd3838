"""The headless CLI: exit codes, --set, --json, validate, nodes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodegen.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def graph(tmp_path):
    Image.fromarray((np.arange(16 * 24 * 3) % 255).astype("uint8").reshape(16, 24, 3)).save(tmp_path / "in.png")
    g = {"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "LoadImage", "title": "Source", "inputs": {"image": str(tmp_path / "in.png")}},
        "2": {"type": "ImageScale", "title": "Scale", "inputs": {"image": {"from": ["1", "image"]},
                                                                   "width": 48, "height": 0}},
        "3": {"type": "SaveImage", "inputs": {"images": {"from": ["2", "image"]}, "filename_prefix": "cli"}},
    }}
    p = tmp_path / "g.json"
    p.write_text(json.dumps(g))
    return p


def test_run_writes_outputs_and_set_overrides(graph, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(graph), "--out", str(out), "--set", "Scale.width=12"]) == 0
    files = sorted(out.glob("cli_*.png"))
    assert len(files) == 1 and Image.open(files[0]).size == (12, 8)
    assert f"wrote {files[0]}" in capsys.readouterr().out
    # never overwrites: a second run makes a second file
    assert main(["run", str(graph), "--out", str(out)]) == 0
    assert len(list(out.glob("cli_*.png"))) == 2


def test_invalid_graph_exit_2_lists_problems(graph, capsys):
    assert main(["run", str(graph), "--set", "2.width=-3", "--set", "Source.image=/nope.png"]) == 2
    err = capsys.readouterr().err
    assert "out_of_range" in err and "missing_file" in err


def test_usage_errors_are_a_json_event_with_json(graph, tmp_path, capsys):
    import json

    assert main(["run", str(graph), "--json", "--set", "Nope.width=3"]) == 2
    out = capsys.readouterr()
    (event,) = [json.loads(line) for line in out.out.splitlines()]
    assert event["event"] == "error" and event["kind"] == "usage" and "'Nope'" in event["message"]
    assert "nodegen: error:" in out.err  # and the message for people, as before
    assert main(["run", str(graph), "--set", "Nope.width=3"]) == 2
    assert capsys.readouterr().out == ""  # without --json stdout stays empty


def test_usage_errors_exit_2(graph, capsys):
    assert main(["run", str(graph), "--set", "Nope.width=3"]) == 2
    assert main(["run", str(graph), "--set", "2.bogus=3"]) == 2
    assert "has no input 'bogus'" in capsys.readouterr().err
    assert main(["run", str(graph) + ".missing"]) == 2
    assert main(["frobnicate"]) == 2


def test_node_failure_exit_1(tmp_path, capsys):
    bad = tmp_path / "notimage.png"
    bad.write_text("this is not a png")
    g = {"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "LoadImage", "inputs": {"image": str(bad)}},
        "2": {"type": "PreviewImage", "inputs": {"images": {"from": ["1", "image"]}}}}}
    p = tmp_path / "g.json"
    p.write_text(json.dumps(g))
    assert main(["run", str(p)]) == 1
    err = capsys.readouterr().err
    assert "node 1 (LoadImage, LoadImage) failed" in err and "notimage.png" in err


def test_json_events(graph, tmp_path, capsys):
    assert main(["run", str(graph), "--json", "--out", str(tmp_path / "o")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    kinds = [x["event"] for x in lines]
    assert kinds[0] == "run_started" and "node_finished" in kinds and kinds[-1] == "outputs"
    assert lines[-1]["paths"][0].endswith(".png")


def test_validate_and_nodes(graph, capsys):
    assert main(["validate", str(graph)]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["nodes", "--json"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "SaveImage" in schema["nodes"]
    assert main(["nodes", "--category", "math"]) == 0
    assert "IntMath" in capsys.readouterr().out


def test_ctrl_c_exit_130(tmp_path):
    """A real process interrupted with SIGINT while a node runs exits 130."""
    plugin = tmp_path / "nodes"
    plugin.mkdir()
    (plugin / "sleepy.py").write_text(
        "import time\nfrom nodegen.kernel.node import node, Input\n"
        "@node('Sleepy', output=True, inputs=[Input.int('n', 100)])\n"
        "def sleepy(ctx, n):\n"
        "    for i in range(n):\n"
        "        ctx.progress(i, n)\n"
        "        time.sleep(0.05)\n"
        "    return {}\n")
    g = tmp_path / "g.json"
    g.write_text(json.dumps({"format": "nodegen-workflow", "version": 1,
                             "nodes": {"1": {"type": "Sleepy", "inputs": {"n": 400}}}}))
    import os
    import signal
    import time

    env = dict(os.environ, NODEGEN_NODES_PATH=str(plugin), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "run", str(g)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    line = ""
    while "Sleepy" not in line and time.time() < deadline:
        line = proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert proc.returncode == 130
