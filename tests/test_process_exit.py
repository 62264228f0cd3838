"""nodegen's own processes leave with os._exit after doing everything Python does at exit (join
threads, run atexit handlers, flush the streams), skipping only the interpreter's teardown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import atexit, sys, threading, time
from pathlib import Path
from nodegen.cli.process import finish_process
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
def late():
    time.sleep(0.3)
    (out / "thread").write_text("finished")
threading.Thread(target=late).start()
sys.stdout.write("unflushed text")  # no newline, no flush: must still come out
finish_process(7)
"""


def run_child(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **env}, timeout=120)


def test_fast_exit_runs_what_python_runs_at_exit(tmp_path):
    done = run_child(tmp_path)
    assert done.returncode == 7
    assert done.stdout == "unflushed text"
    assert (tmp_path / "thread").read_text() == "finished"  # non-daemon threads joined first
    assert (tmp_path / "atexit").read_text() == "ran"


def test_full_exit_is_kept_on_request(tmp_path):
    done = run_child(tmp_path, NODEGEN_FULL_EXIT="1")
    assert done.returncode == 7
    assert (tmp_path / "atexit").read_text() == "ran"
