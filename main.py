"""nodegen's entry point: ``python main.py`` opens the editor; ``python main.py COMMAND ...`` runs
the headless command line (``run``, ``validate``, ``nodes``, ...). Same as the ``nodegen`` script."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] == "gui":
        from gui.app import main as gui_main

        return gui_main(argv[1:] if argv else [])
    from nodegen.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
