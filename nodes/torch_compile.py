"""TorchCompileModel: the MODEL's denoiser compiled with torch.compile when sampling (ComfyUI's
comfy_extras/nodes_torch_compile.py); see :mod:`nodegen.models.compile`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

BACKENDS = ("inductor", "cudagraphs")


@node("TorchCompileModel", category="advanced/model",
      description="Compile the model's denoiser with torch.compile (backend inductor or cudagraphs) for the runs "
                  "of this MODEL; the first run compiles (slow), later runs reuse it. If compiling fails (e.g. "
                  "inductor without a C++ compiler) a warning is logged and the model runs uncompiled.",
      inputs=[Input.link("model", T.MODEL),
              Input.choice("backend", BACKENDS, "inductor", description="torch.compile backend")],
      outputs=[Output("model", T.MODEL)], keywords=("torch.compile", "compile", "inductor"))
def torch_compile_model(ctx, model, backend="inductor"):
    if backend not in BACKENDS:
        raise ValueError(f"TorchCompileModel: input 'backend' must be one of {', '.join(BACKENDS)}, got {backend!r}")
    out = model.clone()
    out.options["torch_compile"] = backend
    return out
