"""Refresh docs/screenshots/<graph>.png: every example graph as the editor opens it at the default
window size (offscreen rendering, no display needed).

    python -m tools.screenshot_examples            # all of graphs/*.json
    python -m tools.screenshot_examples --run      # run the graphs that validate first (previews)
    python -m tools.screenshot_examples txt2img style_transfer --out /tmp/shots
    python -m tools.screenshot_examples --runs     # also gallery.png and queue.png (a seed sweep)

Graphs whose models are not installed open with those inputs flagged, as a user would see them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The size the editor opens at on a large enough screen (gui.mainwindow.DEFAULT_SIZE).
DEFAULT_SIZE = (1400, 900)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("graphs", nargs="*", help="graph names or files (default: every graphs/*.json)")
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="output folder")
    p.add_argument("--run", action="store_true", help="run the graphs that validate before the shot")
    p.add_argument("--runs", action="store_true",
                   help="also shoot the gallery and the queue after a seed sweep of txt2img")
    p.add_argument("--size", default=f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}", help="window size WxH")
    return p.parse_args(argv)


def graph_files(names: list[str]) -> list[Path]:
    if not names:
        return sorted((ROOT / "graphs").glob("*.json"))
    out = []
    for n in names:
        p = Path(n)
        out.append(p if p.suffix == ".json" else ROOT / "graphs" / f"{n}.json")
    return out


def shoot(app, engine, graph: Path, out: Path, size: tuple[int, int], run: bool) -> str:
    """Open ``graph`` in a fresh window of ``size``, optionally run it, save the window to ``out``."""
    from nodegen.gui.app import screenshot, wait_for_runs
    from nodegen.gui.mainwindow import MainWindow

    window = MainWindow(engine)
    window.ask_save_changes = lambda: "discard"
    window.resize(*size)
    if not window.open_file(str(graph), ask=False):
        return f"cannot open: {window.last_error}"
    status = "opened"
    if run:
        window.show()
        if window.run_graph():
            status = wait_for_runs(app, window) or "?"
        else:
            status = "not run (problems)"
    ok = screenshot(app, window, str(out), canvas_only=False)
    window.doc.undo_stack.setClean()
    window.doc.dirty = False
    window.runner.shutdown()
    window.close()
    window.deleteLater()
    app.processEvents()
    return status if ok else "cannot write"


def shoot_runs(app, engine, out_dir: Path, size: tuple[int, int]) -> str:
    """gallery.png and queue.png: txt2img swept over eight seeds, as the gallery grid and the queue."""
    from nodegen.gui.app import wait_for_runs
    from nodegen.gui.mainwindow import MainWindow

    window = MainWindow(engine)
    window.ask_save_changes = lambda: "discard"
    window.resize(*size)
    window.open_file(str(ROOT / "graphs" / "txt2img.json"), ask=False)
    window.show()
    number = window.run_sweep(["5.seed=1..8"], Path(engine.env.output_dir) / "sweeps" / "txt2img-seed")
    window.runner.cancel_job(window.runner.submit(window.doc.data, label="txt2img"))  # a cancelled one
    wait_for_runs(app, window)
    sweep = window.runner.jobs[number] if number is not None else None
    window.gallery_dock.raise_()
    app.processEvents()
    ok = window.grab().save(str(out_dir / "gallery.png"))
    window.queue_dock.raise_()
    app.processEvents()
    ok = window.grab().save(str(out_dir / "queue.png")) and ok
    window.doc.undo_stack.setClean()
    window.runner.shutdown()
    window.close()
    window.deleteLater()
    if sweep is None or sweep.status != "done":
        return f"cannot sweep: {sweep.info if sweep else 'the sweep did not start'}"
    return f"a sweep of {len(sweep.outputs)} images" if ok else "cannot write"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    scratch = Path(tempfile.mkdtemp(prefix="nodegen-shots-"))  # GUI state and run outputs
    os.environ.setdefault("NODEGEN_GUI_STATE", str(scratch / "state"))  # no recent files etc.
    from PySide6.QtWidgets import QApplication

    from nodegen.gui.theme import apply_dark
    from nodegen.runtime.engine import Engine

    app = QApplication.instance() or QApplication(["nodegen"])
    apply_dark(app)
    w, _, h = args.size.partition("x")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine(input_dir=ROOT / "graphs", output_dir=scratch / "output", device="cpu")
    failed = 0
    for graph in graph_files(args.graphs):
        target = out_dir / f"{graph.stem}.png"
        status = shoot(app, engine, graph, target, (int(w), int(h)), args.run)
        failed += status.startswith("cannot")
        print(f"{target}: {status}")
    if args.runs:
        status = shoot_runs(app, engine, out_dir, (int(w), int(h)))
        failed += status.startswith("cannot")
        print(f"{out_dir / 'gallery.png'}, {out_dir / 'queue.png'}: {status}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
