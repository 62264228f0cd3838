"""nodegen's entry point: ``python main.py`` opens the editor; ``python main.py COMMAND ...`` runs
the headless command line (``run``, ``validate``, ``nodes``, ``serve``, ``sweep``, ...). Same as the
installed ``nodegen`` script."""

import sys

from nodegen.cli import entry, main  # noqa: F401 - main: the in-process entry tests use

if __name__ == "__main__":
    sys.exit(entry())
