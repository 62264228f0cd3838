"""fp8 weight storage: a transformer's linear weights stay in float8 (e4m3fn / e5m2) in memory and
are upcast to the compute dtype one layer at a time, inside that layer's forward. Everything else
(biases, norms, embeddings) is held in the compute dtype. On the CPU the compute dtype is float32;
on a GPU the manager's (fp16/bf16). The manager moves such modules between devices without
changing their dtypes (``keeps_dtype``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)


def linear_weight_keys(module: torch.nn.Module) -> set[str]:
    return {f"{name}.weight" if name else "weight" for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)}


def fp8_state(probe: torch.nn.Module, sd: dict, storage: torch.dtype, dtype: torch.dtype) -> dict:
    """``sd``'s tensors (popped from it, so the originals are freed as they are converted) with linear
    weights in ``storage`` and every other float tensor in ``dtype``."""
    linear = linear_weight_keys(probe)
    out = {}
    for k in list(sd):
        v = sd.pop(k)
        if not v.is_floating_point():
            out[k] = v
        elif k in linear:
            out[k] = v if v.dtype == storage else v.to(dtype).to(storage) if v.dtype in FP8 else v.to(storage)
        else:
            out[k] = v.to(dtype) if v.dtype != dtype else v.clone()
    return out


def _forward(layer: torch.nn.Linear):
    def forward(x: torch.Tensor) -> torch.Tensor:
        w = layer.weight.to(x.dtype)
        return F.linear(x, w, None if layer.bias is None else layer.bias.to(x.dtype))
    return forward


def make_fp8_compute(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Upcast fp8 linear weights per call; mark the module so its dtypes are kept."""
    for m in module.modules():
        if isinstance(m, torch.nn.Linear) and m.weight.dtype in FP8:
            m.forward = _forward(m)
    module._nodegen_compute_dtype = dtype
    module._nodegen_keep_dtype = True
    return module


def keeps_dtype(module: torch.nn.Module) -> bool:
    return bool(getattr(module, "_nodegen_keep_dtype", False))


def compute_dtype(module: torch.nn.Module) -> torch.dtype | None:
    return getattr(module, "_nodegen_compute_dtype", None)
