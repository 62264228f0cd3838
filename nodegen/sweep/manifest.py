"""``sweep.jsonl``, under its old name: the manifest moved to the shared sweep core
(:mod:`nodegen.runtime.sweep.manifest`), which the editor's sweeps write too. Readers of a sweep's
manifest may import it from either place."""

from nodegen.runtime.sweep.manifest import NAME, Manifest

__all__ = ["NAME", "Manifest"]
