"""The headless command line: ``python main.py <command> ...`` (also the ``nodegen`` script).

Exit codes: 0 success, 1 a node failed, 2 invalid graph or usage, 130 interrupted.
Each command lives in its own module with ``add_parser(subparsers)``; the parser's ``func`` runs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
#: The reader of stdout went away (128 + SIGPIPE, what a shell reports for a command killed by it).
EXIT_BROKEN_PIPE = 141

#: Command modules (in nodegen.cli) in the order ``--help`` lists them.
COMMAND_MODULES = ["run", "validate", "nodes_cmd", "info", "lock", "import_cmd", "serve", "sweep", "rank"]


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    from nodegen.kernel.version import __version__

    parser = argparse.ArgumentParser(
        prog="nodegen", description="nodegen: node-graph image generation. With no command, "
        "'python main.py' opens the editor ('gui [GRAPH]').")
    parser.add_argument("--version", action="version", version=f"nodegen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"nodegen.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"nodegen.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def entry() -> int:
    """The ``nodegen`` command and ``main.py``: a nodegen process of its own (lean imports, a
    thread policy that holds up on a busy machine), then :func:`main`."""
    from nodegen.cli.process import finish_process, setup_process

    setup_process()
    code = main()
    if _opens_editor(sys.argv[1:]):
        return code  # the editor: Qt's own orderly exit
    finish_process(code)


def _opens_editor(argv: list[str]) -> bool:
    return not argv or argv[0] == "gui"


def main(argv: list[str] | None = None) -> int:
    """``nodegen`` with no command (or ``gui [GRAPH]``) opens the editor; otherwise a command runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if _opens_editor(argv):
        from nodegen.gui.app import main as gui_main

        return gui_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_INVALID
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INVALID
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"nodegen: error: {_short(e)}", file=sys.stderr)
        _json_error(args, "usage", _short(e))
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("\nnodegen: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader left (``nodegen run --json | head``): stop quietly, as other command-line tools do
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (OSError, ValueError, RecursionError, MemoryError, OverflowError) as e:
        # bad input that reached past the checks (a full disk, an unreadable file): a message,
        # not a traceback (--debug shows it)
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        print(f"nodegen: error: {type(e).__name__}: {_short(e)}", file=sys.stderr)
        _json_error(args, type(e).__name__, _short(e))
        return EXIT_INVALID


def _json_error(args, kind: str, message: str) -> None:
    """With ``--json`` the error also goes to stdout as an event, so a program reading the events
    learns why nothing ran (``{"event": "error", "kind", "message"}``)."""
    if getattr(args, "json", False):
        import json

        try:
            print(json.dumps({"event": "error", "kind": kind, "message": message}), flush=True)
        except (OSError, ValueError):  # stdout closed too
            pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit does not fail a second time."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor (tests)
        pass


def _short(e: BaseException, limit: int = 2000) -> str:
    text = str(e)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
