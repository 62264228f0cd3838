"""Writing state dicts as ComfyUI's "fp8 scaled" files (:mod:`nodegen.models.fp8_scaled`): each chosen
Linear weight quantized to float8_e4m3fn with a per-tensor scale (``amax / 448``), laid out as
ComfyUI's files are:

* ``legacy``: a ``scaled_fp8`` marker (an empty fp8 tensor) under each model prefix, ``X.weight`` (fp8),
  ``X.scale_weight`` (float32, 0-d) and, on every other layer, ``X.scale_input``;
* ``comfy_quant``: ``X.weight``, ``X.weight_scale``, ``X.input_scale`` and the uint8 JSON ``X.comfy_quant``;
* ``metadata``: the same without the per-layer JSON tensors, the layers listed in the header's
  ``_quantization_metadata``.

:func:`write_scaled` also returns the dequantized state (``fp8.float() * scale``): the oracle's weights.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

T5_LINEAR = re.compile(r".*\.(q|k|v|o|wi|wi_0|wi_1|wo)\.weight$")
CLIP_LINEAR = re.compile(r".*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)\.weight$|^text_projection\.weight$")


def flux_linear(key: str, value: torch.Tensor) -> bool:
    """Every 2-D weight of a Flux / SD3 / Chroma transformer (original layout) is a Linear's."""
    return key.endswith(".weight") and value.ndim == 2


def quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = (w.float().abs().amax() / 448.0).clamp(min=1e-12)
    return (w.float() / scale).to(torch.float8_e4m3fn), scale.reshape(())


def _json_tensor(obj: dict) -> torch.Tensor:
    return torch.tensor(list(json.dumps(obj).encode("utf-8")), dtype=torch.uint8)


def write_scaled(sd: dict[str, torch.Tensor], path: Path, is_linear: Callable[[str, torch.Tensor], bool],
                 layout: str = "legacy", prefixes: tuple[str, ...] = ("",),
                 fmt: str = "float8_e4m3fn") -> dict[str, torch.Tensor]:
    """Write ``sd`` to ``path`` with the weights ``is_linear`` picks quantized; the dequantized state."""
    out: dict[str, torch.Tensor] = {}
    plain: dict[str, torch.Tensor] = {}
    layers: dict[str, dict] = {}
    n = 0
    for k, v in sd.items():
        if not is_linear(k, v):
            out[k] = plain[k] = v.contiguous()
            continue
        q, scale = quantize(v)
        layer = k.removesuffix(".weight")
        out[k], plain[k] = q, q.float() * scale
        if layout == "legacy":
            out[layer + ".scale_weight"] = scale
            if n % 2:
                out[layer + ".scale_input"] = torch.ones(())
        else:
            out[layer + ".weight_scale"] = scale
            out[layer + ".input_scale"] = torch.ones(()) * 0.5
            layers[layer] = {"format": fmt}
            if layout == "comfy_quant":
                out[layer + ".comfy_quant"] = _json_tensor({"format": fmt})
        n += 1
    if layout == "legacy":
        for p in prefixes:
            out[p + "scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    meta = {"_quantization_metadata": json.dumps({"format_version": "1.0", "layers": layers})} \
        if layout == "metadata" else None
    save_file(out, str(path), metadata=meta)
    return plain
