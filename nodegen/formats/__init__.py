"""File formats: nodegen workflow files, PNGs that carry their workflow, ComfyUI workflows.

:func:`open_any` is the one entry point that detects and opens each of them.
"""

from nodegen.formats.open import document_from_data, is_native, open_any, read_data

__all__ = ["document_from_data", "is_native", "open_any", "read_data"]
