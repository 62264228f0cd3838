"""Issue 18, Ctrl+C and kill -9: in a real process, during sampling and during a save. The exit
code is 130 on Ctrl+C (never an abort), and every PNG left in the output folder is complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

#: The child runs the CLI; with SLOW_SAVE=FILE it writes half of each PNG, prints SAVING and waits
#: until FILE exists before writing the rest, so that the signal lands while a file is being written.
CHILD = r"""
import io, os, sys, time
if os.environ.get("SLOW_SAVE"):
    from PIL import Image
    real = Image.Image.save
    def slow(self, fp, format=None, **kw):
        if isinstance(fp, (str, os.PathLike)):
            return real(self, fp, format, **kw)
        buf = io.BytesIO()
        real(self, buf, format, **kw)
        data = buf.getvalue()
        fp.write(data[: len(data) // 2]); fp.flush()
        print("SAVING", file=sys.stderr, flush=True)
        end = time.monotonic() + 60
        while not os.path.exists(os.environ["SLOW_SAVE"]) and time.monotonic() < end:
            time.sleep(0.02)
        fp.write(data[len(data) // 2:])
    Image.Image.save = slow
from nodegen.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env(tmp_path, **extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", NODEGEN_THREADS="1", HF_HUB_OFFLINE="1",
               NODEGEN_CACHE_DIR=str(tmp_path / "cache"), NODEGEN_LOG_DIR=str(tmp_path / "logs"),
               NODEGEN_CONFIG=str(tmp_path / "no_config.json"),
               NODEGEN_NODES_PATH=str(tmp_path / "no_nodes"), PYTHONPATH=str(ROOT), **extra)
    return env


def _start(tmp_path, args, **extra):
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=tmp_path, env=_env(tmp_path, **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(stream, needle: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    for line in stream:
        if needle in line:
            return
        if time.monotonic() > end:
            break
    raise AssertionError(f"{needle!r} never appeared")


def _all_pngs_complete(folder: Path) -> list[Path]:
    pngs = sorted(folder.rglob("*.png")) if folder.exists() else []
    for p in pngs:
        with Image.open(p) as im:
            im.load()  # a truncated file raises here
    return pngs


def _save_graph(tmp_path):
    (tmp_path / "input").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(
        tmp_path / "input" / "src.png")
    g = tmp_path / "save.json"
    g.write_text(json.dumps({"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "LoadImage", "inputs": {"image": "src.png"}},
        "2": {"type": "SaveImage", "inputs": {"images": {"from": ["1", "image"]}, "filename_prefix": "s"}}}}))
    return g


def test_signals_during_save_leave_no_partial_png(tmp_path):
    """SIGINT and SIGKILL (two processes at once, to save time) while a PNG is being written."""
    g = _save_graph(tmp_path)
    outs = {sig: tmp_path / f"out{int(sig)}" for sig in (signal.SIGINT, signal.SIGKILL)}
    release = tmp_path / "release"
    procs = {sig: _start(tmp_path, ["run", str(g), "--out", str(out)], SLOW_SAVE=str(release))
             for sig, out in outs.items()}
    for sig, proc in procs.items():
        _wait_for(proc.stderr, "SAVING")  # half of the PNG is written; the rest waits for `release`
        assert [p.name for p in outs[sig].glob("*.png")] == []  # nothing under a final name yet
        proc.send_signal(sig)
    time.sleep(0.5)  # let SIGINT reach the main thread while the worker is mid-write
    release.touch()
    for proc in procs.values():
        proc.communicate(timeout=60)
    assert procs[signal.SIGINT].returncode == 130
    assert len(_all_pngs_complete(outs[signal.SIGINT])) == 1  # the save in progress was finished
    killed = outs[signal.SIGKILL]
    assert procs[signal.SIGKILL].returncode == -signal.SIGKILL
    assert _all_pngs_complete(killed) == []
    assert [p for p in killed.iterdir() if p.name.endswith(".tmp")]  # the abandoned temp file...
    rerun = _start(tmp_path, ["run", str(g), "--out", str(killed)])
    rerun.communicate(timeout=60)
    assert rerun.returncode == 0
    assert len(_all_pngs_complete(killed)) == 1
    assert not [p for p in killed.iterdir() if p.name.endswith(".tmp")]  # ...is cleaned next time


def test_signals_during_sampling(tmp_path):
    """Ctrl+C during sampling exits 130 (7 of 8 tries aborted with SIGABRT before); kill -9
    leaves nothing. Two processes at once."""
    outs = {sig: tmp_path / f"out{int(sig)}" for sig in (signal.SIGINT, signal.SIGKILL)}
    procs = {sig: _start(tmp_path, ["run", str(ROOT / "graphs" / "txt2img.json"), "--out", str(out), "--json",
                                    "--set", "Sampler.steps=2000"]) for sig, out in outs.items()}
    for sig, proc in procs.items():
        _wait_for(proc.stdout, '"node_progress"')
        proc.send_signal(sig)
    errs = {sig: proc.communicate(timeout=60)[1] for sig, proc in procs.items()}
    assert procs[signal.SIGINT].returncode == 130, errs[signal.SIGINT][-2000:]
    assert "terminate called" not in errs[signal.SIGINT]
    assert procs[signal.SIGKILL].returncode == -signal.SIGKILL
    for out in outs.values():
        assert _all_pngs_complete(out) == []
