"""Flux.1 without its guidance embedding, for the conditioning items whose guidance is None
(ComfyUI's FluxDisableGuidance): ComfyUI's Flux then adds no ``guidance_in`` term to the time
vector (``vec = time_in(t) + vector_in(y)``). diffusers' transformer always adds its
``guidance_embedder`` output when it is given a guidance; for those rows that output is zeroed,
which leaves exactly the time and pooled-text terms."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def guidance_off(transformer, rows_off: list[bool]):
    """While active, the rows ``rows_off`` of the batch get no guidance embedding."""
    embedder = getattr(getattr(transformer, "time_text_embed", None), "guidance_embedder", None)
    if embedder is None or not any(rows_off):
        yield
        return
    keep = torch.tensor([0.0 if off else 1.0 for off in rows_off])

    def drop(module, args, out):
        return out * keep.to(out)[:, None]

    handle = embedder.register_forward_hook(drop)
    try:
        yield
    finally:
        handle.remove()
