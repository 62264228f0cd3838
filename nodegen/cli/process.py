"""What a nodegen process of its own sets up before anything heavy is imported."""

from __future__ import annotations


def setup_process() -> None:
    """OpenMP threads that sleep when idle (see :mod:`nodegen.runtime.threads`) and lean imports
    of diffusers (see :mod:`nodegen.compat.lean_imports`)."""
    from nodegen.compat import lean_imports
    from nodegen.runtime.threads import setup_own_process

    setup_own_process()
    lean_imports.enable()
