"""Start the editor: ``python main.py [gui [GRAPH] [--screenshot OUT.png] [--run] [--models DIR]]``.

``--screenshot`` renders the window without a display (offscreen) to a PNG and exits; with
``--run`` the graph runs first, so image previews show. ``--canvas-only`` renders only the canvas.
"""

from __future__ import annotations

import argparse
import os
import sys

from nodegen.diffusion.preview_method import PREVIEW_METHODS, preview_method_from_env


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nodegen gui", description="The nodegen node editor.")
    p.add_argument("graph", nargs="?", help="a workflow .json (or a PNG with an embedded workflow)")
    p.add_argument("--models", action="append", help="models root folder (repeatable)")
    p.add_argument("--input-dir", default="input", help="folder of input images (default: input)")
    p.add_argument("--output-dir", default="output", help="folder for saved images (default: output)")
    p.add_argument("--device", default="auto", help="compute device: auto, cpu, cuda, cuda:1...")
    p.add_argument("--screenshot", metavar="OUT.png", help="render the window to a PNG and exit")
    p.add_argument("--canvas-only", action="store_true", help="with --screenshot: only the canvas")
    p.add_argument("--run", action="store_true", help="run the graph (before the screenshot)")
    p.add_argument("--size", default="1600x1000", help="window size for --screenshot (WxH)")
    p.add_argument("--preview", choices=list(PREVIEW_METHODS), default=None,
                   help="live sampling previews: auto (TAESD when its file is in vae_approx/, else latent2rgb; "
                        "the default), taesd, latent2rgb or none; also NODEGEN_PREVIEW and Settings > Live previews "
                        "(this option wins for the session)")
    return p.parse_args(argv)


def make_engine(args):
    from nodegen.runtime.engine import Engine

    # the editor is driven by the person at the keyboard, who picks images anywhere with the file
    # dialog: the LoadImage folder policy guards headless runs and the server, not this
    return Engine(models=args.models, output_dir=args.output_dir, input_dir=args.input_dir, device=args.device,
                  allow_any_path=True, preview=args.preview)


def wait_for_runs(app, window, timeout_s: float = 600.0) -> str | None:
    """Process events until the run queue is empty (for --run and tests)."""
    import time

    end = time.monotonic() + timeout_s
    while (window.runner.busy or window.runner.pending()) and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)
    app.processEvents()
    return window.last_status


def screenshot(app, window, out: str, canvas_only: bool) -> bool:
    from PySide6.QtGui import QImage

    if canvas_only:
        for dock in (window.palette_dock, window.history_dock, window.viewer_dock, window.gallery_dock,
                     window.queue_dock, window.problems_dock):
            dock.hide()
    window.show()
    for _ in range(3):  # show, lay out, fit (the view fits itself once it has its size)
        app.processEvents()
    widget = window.view.viewport() if canvas_only else window
    pixmap = widget.grab()
    img: QImage = pixmap.toImage()
    return img.save(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        preview_method_from_env()
    except ValueError as e:  # a bad NODEGEN_PREVIEW: said before any window opens
        print(f"nodegen gui: {e}", file=sys.stderr)
        return 2
    if args.screenshot and "QT_QPA_PLATFORM" not in os.environ and not os.environ.get("DISPLAY") \
            and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if not args.screenshot and sys.platform.startswith("linux") and not any(
            os.environ.get(k) for k in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")):
        print("nodegen gui: no display found (DISPLAY/WAYLAND_DISPLAY unset). Run it on a desktop, "
              "or render a picture with: nodegen gui GRAPH --screenshot out.png [--run]", file=sys.stderr)
        return 2
    from PySide6.QtCore import QCoreApplication, Qt
    from PySide6.QtWidgets import QApplication

    from .mainwindow import MainWindow
    from .theme import apply_dark

    app = QApplication.instance()
    owns_app = app is None
    if owns_app:
        QApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        QCoreApplication.setOrganizationName("nodegen")
        QCoreApplication.setApplicationName("nodegen")
        app = QApplication(["nodegen"])
    apply_dark(app)
    window = MainWindow(make_engine(args))
    if args.screenshot:
        w, _, h = args.size.partition("x")
        window.resize(int(w), int(h))
    if args.graph:
        if not window.open_file(args.graph, ask=False):
            print(f"nodegen gui: cannot open {args.graph}: {window.last_error}", file=sys.stderr)
            if args.screenshot:
                return 2
    elif not args.screenshot:
        window.offer_recovery()
    if args.run:
        window.show()
        if window.run_graph():
            status = wait_for_runs(app, window)
            if status != "ok":
                print(f"nodegen gui: the run ended {status}", file=sys.stderr)
        else:
            print("nodegen gui: not run: " + "; ".join(
                window.problems.item(i).text() for i in range(window.problems.count())), file=sys.stderr)
    if args.screenshot:
        ok = screenshot(app, window, args.screenshot, args.canvas_only)
        window.doc.undo_stack.setClean()
        window.doc.dirty = False
        window.close()
        window.deleteLater()
        if not ok:
            print(f"nodegen gui: cannot write {args.screenshot}", file=sys.stderr)
            return 1
        print(args.screenshot)
        return 0
    window.show()
    if owns_app:
        return app.exec()
    return 0
