"""nodegen's entry point: ``python main.py`` opens the editor; ``python main.py COMMAND ...`` runs
the headless command line (``run``, ``validate``, ``nodes``, ``serve``, ``sweep``, ...). Same as the
installed ``nodegen`` script."""

import sys

from nodegen.cli import entry

if __name__ == "__main__":
    sys.exit(entry())
