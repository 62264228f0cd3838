"""Mahiro guidance as a model patch, as ComfyUI's experimental node; see :mod:`nodegen.diffusion.mahiro`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("Mahiro", category="advanced/guidance",
      description="Lean the guidance towards the positive prompt's direction rather than its difference "
                  "from the negative (ComfyUI's experimental Mahiro; any model, no extra model calls).",
      inputs=[Input.link("model", T.MODEL)], outputs=[Output("patched_model", T.MODEL)],
      keywords=("guidance", "cfg"))
def mahiro(ctx, model):
    from nodegen.diffusion.mahiro import Mahiro

    return model.with_denoise_hook(Mahiro())
