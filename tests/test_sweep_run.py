"""Sweeps end to end on light graphs: manifest, provenance, resume, a failed job, the grid, local
worker processes, Ctrl+C, and the model-hash check."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from nodegen.cli import main
from nodegen.formats.png import read_values
from nodegen.sweep.driver import SweepError, SweepOptions, run_sweep
from nodegen.sweep.local import WorkerFailed
from tests.support.jobs import light_workflow, slow_workflow, tiny_png

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def setup(tmp_path):
    for name, size in (("a.png", 4), ("b.png", 6), ("c.png", 8)):
        tiny_png(tmp_path / "in", name, size)
    graph = tmp_path / "light.json"
    graph.write_text(json.dumps(light_workflow("a.png")))
    return tmp_path, graph


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]


def test_sweep_writes_images_with_provenance_and_resumes(setup):
    root, graph = setup
    out = root / "out"
    opts = SweepOptions(str(graph), ["Source.image=a.png,b.png,c.png", "Save.filename_prefix=x,y"],
                        out=str(out), input_dir=str(root / "in"), grid=True)
    events = []
    report = run_sweep(opts, events.append)
    assert (report.jobs, report.done, report.failed, report.skipped) == (6, 6, 0, 0)
    records = [r for r in manifest(out) if "job" in r]
    assert [r["job"] for r in records] == list(range(6))
    # the prefix (nearer the outputs) varies fastest
    assert [tuple(r["values"].values()) for r in records][:2] == [("a.png", "x"), ("a.png", "y")]
    for r in records:
        (f,) = r["files"]
        values = read_values(out / f)
        assert values["inputs"]["1"]["image"] == r["values"]["Source.image"]
        assert values["inputs"]["3"]["filename_prefix"] == r["values"]["Save.filename_prefix"]
        assert r["status"] == "done" and r["seconds"] >= 0
    assert [e["event"] for e in events][0] == "sweep_started" and events[-1]["event"] == "sweep_finished"
    with Image.open(report.grid) as grid:
        assert grid.width > 2 * 8 and grid.height > 3 * 8
    again = run_sweep(opts)
    assert (again.done, again.skipped) == (0, 6)
    # a job whose image lost its provenance match is run again, the others are not
    victim = out / records[4]["files"][0]
    victim.unlink()
    third = run_sweep(opts)
    assert (third.done, third.skipped) == (1, 5)
    assert len(list(out.glob("*/*.png"))) == 6


def test_a_failed_job_is_recorded_and_the_sweep_goes_on(setup, capsys):
    root, graph = setup
    out = root / "out"
    code = main(["sweep", str(graph), "--over", "Source.image=a.png,missing.png,b.png", "--out", str(out),
                 "--input", str(root / "in"), "--json"])
    assert code == 1
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finished = [e for e in events if e["event"] == "job_finished"]
    assert [e["status"] for e in finished] == ["done", "failed", "done"]
    assert "missing.png" in finished[1]["error"]
    assert events[-1]["failed"] == 1 and events[-1]["done"] == 2


def test_bad_specs_are_usage_errors(setup, capsys):
    root, graph = setup
    for over in ("Nope.image=a", "Source.nope=1", "Source.image=@nofile.txt", "Save.filename_prefix=random:x"):
        assert main(["sweep", str(graph), "--over", over, "--out", str(root / "o")]) == 2
        assert "--over" in capsys.readouterr().err
    with pytest.raises(SweepError, match="already sweeps"):
        run_sweep(SweepOptions(str(graph), ["Source.image=a.png", "1.image=b.png"], out=str(root / "o")))


def test_two_local_worker_processes(setup):
    root, graph = setup
    out = root / "out2"
    report = run_sweep(SweepOptions(str(graph), ["Save.filename_prefix=p,q,r,s,t,u"], out=str(out),
                                    input_dir=str(root / "in"), workers=2))
    assert report.done == 6 and report.failed == 0
    assert sorted(r["values"]["Save.filename_prefix"] for r in report.records) == list("pqrstu")
    assert len(list(out.glob("*/*.png"))) == 6


def test_the_model_hash_check_names_file_hash_and_node(setup):
    root, graph = setup
    doc = light_workflow("a.png")
    doc["nodes"]["9"] = {"type": "CheckpointLoader", "title": "Model",
                         "inputs": {"ckpt_name": "nodegen-demo-shapes.safetensors"}}
    doc["models"] = [{"name": "nodegen-demo-shapes.safetensors", "kind": "checkpoints", "sha256": "0" * 64}]
    graph.write_text(json.dumps(doc))
    with pytest.raises(WorkerFailed) as info:
        run_sweep(SweepOptions(str(graph), ["Save.filename_prefix=a,b"], out=str(root / "o"),
                               input_dir=str(root / "in")))
    text = str(info.value)
    assert "nodegen-demo-shapes.safetensors" in text and "0" * 64 in text and "node 9 (Model)" in text


def test_ctrl_c_stops_cleanly_with_exit_130(setup):
    root, _ = setup
    graph = root / "slow.json"
    graph.write_text(json.dumps(slow_workflow("a.png", size=1536)))
    out = root / "out-int"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "main.py", "sweep", str(graph), "--over", "Save.filename_prefix=1..50",
                             "--out", str(out), "--input", str(root / "in"), "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finished = 0
    deadline = time.monotonic() + 120
    while finished < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        finished += '"job_finished"' in line
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    records = [r for r in manifest(out) if "job" in r]
    assert len(records) >= 2
    for r in records:  # everything recorded is complete
        with Image.open(out / r["files"][0]) as img:
            img.load()
    resumed = run_sweep(SweepOptions(str(graph), ["Save.filename_prefix=1..3"], out=str(out),
                                     input_dir=str(root / "in")))
    assert resumed.skipped >= 2
