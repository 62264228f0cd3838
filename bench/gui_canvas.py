"""Editor canvas speed: open a 500-node graph, and repaint the whole canvas at a few zoom levels.

Builds a graph of 100 five-node image chains (LoadImage -> ImageScaleBy -> ImageInvert ->
ImageBlend -> PreviewImage, all links, widgets and groups drawn), saves it, then times
(best of REPEAT, after the engine's node schema is loaded, which is reported separately):

* open: load the file, build every node/wire item, fit the view;
* repaint: one full repaint of a 1600x1000 canvas at zoom 0.25 (overview), 0.5 and 1.0.

Targets: open < 2 s, repaint < 16 ms.  Offscreen raster painting (no GPU).

    python bench/gui_canvas.py [--nodes 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CHAIN = ("LoadImage", "ImageScaleBy", "ImageInvert", "ImageBlend", "PreviewImage")


def build_graph(n_nodes: int) -> dict:
    nodes: dict = {}
    groups = []
    chains = max(1, n_nodes // len(CHAIN))
    per_row = 10
    for c in range(chains):
        gx, gy = (c % per_row) * 1500, (c // per_row) * 420
        ids = [str(c * len(CHAIN) + i + 1) for i in range(len(CHAIN))]
        nodes[ids[0]] = {"type": "LoadImage", "inputs": {"image": f"img{c}.png"}, "ui": {"pos": [gx, gy]}}
        nodes[ids[1]] = {"type": "ImageScaleBy", "inputs": {"image": {"from": [ids[0], "image"]},
                                                            "method": "bilinear", "scale_by": 0.5},
                         "ui": {"pos": [gx + 280, gy]}}
        nodes[ids[2]] = {"type": "ImageInvert", "inputs": {"image": {"from": [ids[1], "image"]}},
                         "ui": {"pos": [gx + 560, gy]}}
        nodes[ids[3]] = {"type": "ImageBlend", "inputs": {"image1": {"from": [ids[2], "image"]},
                                                          "image2": {"from": [ids[0], "image"]},
                                                          "blend_factor": 0.5, "blend_mode": "normal"},
                         "ui": {"pos": [gx + 840, gy]}}
        nodes[ids[4]] = {"type": "PreviewImage", "inputs": {"images": {"from": [ids[3], "image"]}},
                         "ui": {"pos": [gx + 1120, gy]}}
        if c % 5 == 0:
            groups.append({"title": f"Chain {c}", "bounding": [gx - 20, gy - 50, 1420, 360], "color": "#3f5a73"})
    return {"format": "nodegen-workflow", "version": 1, "metadata": {"name": "bench"},
            "nodes": nodes, "groups": groups}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(["bench"])
    import nodegen.gui  # noqa: F401 - installs the PySide6 6.12 / Python 3.11 fix (gui.qtcompat)
    from nodegen.gui.mainwindow import MainWindow
    from nodegen.gui.theme import apply_dark
    from nodegen.runtime.engine import Engine

    apply_dark(app)
    tmp = Path(tempfile.mkdtemp(prefix="nodegen-bench-"))
    os.environ["NODEGEN_GUI_STATE"] = str(tmp / "state")
    path = tmp / "graph.json"
    path.write_text(json.dumps(build_graph(args.nodes)))

    t = time.perf_counter()
    engine = Engine(input_dir=tmp / "input", output_dir=tmp / "output", device="cpu")
    engine.schema()
    schema_s = time.perf_counter() - t

    window = MainWindow(engine)
    window.resize(1900, 1200)
    for dock in (window.palette_dock, window.history_dock, window.viewer_dock, window.problems_dock):
        dock.hide()
    window.show()
    app.processEvents()
    view = window.view
    vp_size = view.viewport().size()

    opens = []
    for _ in range(args.repeat):
        window.doc.new()
        app.processEvents()
        t = time.perf_counter()
        ok = window.open_file(str(path), ask=False)
        app.processEvents()
        opens.append(time.perf_counter() - t)
        assert ok, window.last_error
    n = len(window.scene.items_by_id)
    edges = len(window.scene.edges)

    results = {}
    img = QImage(vp_size, QImage.Format_ARGB32_Premultiplied)
    for zoom in (0.25, 0.5, 1.0):
        view.set_zoom(zoom)
        view.centerOn(window.scene.nodes_rect().center())
        app.processEvents()
        p = QPainter(img)
        t = time.perf_counter()
        view.render(p)  # first paint at this zoom: every visible node is drawn
        p.end()
        cold = time.perf_counter() - t
        times = []
        for _ in range(args.repeat + 1):
            p = QPainter(img)
            t = time.perf_counter()
            view.render(p)  # the whole visible canvas, as a full viewport repaint does
            p.end()
            times.append(time.perf_counter() - t)
        visible = len([i for i in view.items(view.viewport().rect())])
        results[zoom] = (min(times[1:]), sorted(times[1:])[len(times[1:]) // 2], visible, cold)

    # the floor on this machine: the same repaint of an empty canvas (background and grid only)
    hidden = [i for i in window.scene.items() if i.isVisible()]
    for i in hidden:
        i.hide()
    floor = []
    for _ in range(args.repeat + 1):
        p = QPainter(img)
        t = time.perf_counter()
        view.render(p)
        p.end()
        floor.append(time.perf_counter() - t)
    for i in hidden:
        i.show()

    print(f"gui canvas benchmark  ({platform.python_version()}, {platform.machine()}, "
          f"Qt offscreen raster, viewport {vp_size.width()}x{vp_size.height()})")
    print(f"  node schema load (once per session): {schema_s * 1000:8.1f} ms")
    print(f"  open {n} nodes / {edges} wires: best {min(opens) * 1000:8.1f} ms, "
          f"median {sorted(opens)[len(opens) // 2] * 1000:8.1f} ms   (target < 2000 ms)")
    for zoom, (best, med, visible, cold) in results.items():
        print(f"  full repaint at zoom {zoom:4.2f} ({visible:4d} items visible): best {best * 1000:6.2f} ms, "
              f"median {med * 1000:6.2f} ms   (target < 16 ms); first paint after zooming "
              f"{cold * 1000:6.1f} ms")
    print(f"  empty canvas repaint (the floor here): best {min(floor[1:]) * 1000:6.2f} ms")
    window.doc.undo_stack.setClean()
    window.runner.shutdown()
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
