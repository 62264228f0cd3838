"""Quantized GGUF weights kept in memory: a diffusion transformer's Linear weights stay as the file's
raw GGUF blocks (Q4_0, Q8_0, the K-quants, ...) and are dequantized one layer at a time, inside that
layer's forward, to the compute dtype for the call only (as city96's ComfyUI-GGUF and diffusers'
``GGUFLinear`` run them). A Q4 Flux takes about its file's size in memory instead of 4 bytes a weight.

* Storage: diffusers' ``GGUFParameter`` (``diffusers.quantizers.gguf.utils``): a uint8 tensor of the
  blocks, shaped ``(rows, bytes per row)``, with ``quant_type``; ``quant_shape`` is the logical shape.
  Every row is whole blocks (GGUF blocks run along the last dimension), so the row splits and joins of
  the Flux / SD3 key conversions (qkv, ``linear1``, the final layer's scale/shift swap) are exact on
  the blocks.
* Dequantizing: diffusers' torch dequantizers (``dequantize_functions``), in float32 (as
  :mod:`nodegen.models.gguf_file` dequantizes at load), then to the input's dtype.
* Everything else (biases, norms, embeddings, convolutions, tensors of a type diffusers cannot
  dequantize) is dequantized at load to the compute dtype.
* ComfyUI's fp8 scaled weights (:class:`nodegen.models.fp8_scaled.ScaledFP8`: fp8 values and a
  per-tensor scale) count as quantized here too: the same layers, dequantized as ``fp8 * scale``.
* Weight patches (LoRA): :func:`nodegen.models.patching.patched` hands a quantized weight's deltas to
  its layer (``forward_patches`` on the parameter), which applies them to the dequantized weight in
  the forward; the stored blocks never change.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F

from nodegen.models import fp8_scaled
from nodegen.models.detect import ModelKindError
from nodegen.models.fp8 import linear_weight_keys
from nodegen.models.patching import is_quantized, patched_weight

#: attribute of a quantized parameter that :func:`nodegen.models.patching.patched` sets to the
#: ``(delta, strength)`` pairs its layer applies after dequantizing
FORWARD_PATCHES = "forward_patches"


@cache
def _utils():
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    from diffusers.quantizers.gguf import utils

    return utils


def keeps_quantized(qtype) -> bool:
    """Whether weights of GGML type ``qtype`` stay quantized (diffusers dequantizes them in torch)."""
    import gguf

    return qtype != gguf.GGMLQuantizationType.BF16 and qtype in _utils().dequantize_functions


def quantized(blocks: torch.Tensor, qtype, shape: tuple[int, ...]) -> torch.nn.Parameter:
    """A weight of logical ``shape`` (2-D) as its raw blocks (``blocks``: the file's bytes)."""
    block, size = _utils().GGML_QUANT_SIZES[qtype]
    rows, cols = shape
    if cols % block:
        raise ValueError(f"{cols} columns are not whole {block}-value blocks")
    data = blocks.reshape(rows, cols // block * size)
    return _utils().GGUFParameter(data, requires_grad=False, quant_type=qtype)


def logical_shape(t: torch.Tensor) -> tuple[int, ...]:
    """The shape of the weight ``t`` holds (its blocks' shape differs)."""
    return tuple(getattr(t, "quant_shape", t.shape)) if is_quantized(t) else tuple(t.shape)


def dequantized(t: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A quantized weight's values (float32, then ``dtype``); other tensors unchanged."""
    if not is_quantized(t):
        return t
    if fp8_scaled.is_scaled(t):
        return fp8_scaled.dequantized(t, dtype)
    u = _utils()
    block, size = u.GGML_QUANT_SIZES[t.quant_type]
    raw = t.as_tensor() if hasattr(t, "as_tensor") else t  # a plain tensor: no per-op wrapping
    values = u.dequantize_functions[t.quant_type](raw.reshape(-1, size), block, size, torch.float32)
    return values.reshape(logical_shape(t)).to(dtype)


def _forward(layer: torch.nn.Linear):
    def forward(x: torch.Tensor) -> torch.Tensor:
        w = layer.weight
        if is_quantized(w):
            deltas = getattr(w, FORWARD_PATCHES, None)
            w = dequantized(w)
            if deltas:
                w = patched_weight(w, deltas)
        elif hasattr(w, "as_tensor"):  # patched and held as values for a block: a plain tensor (no
            w = w.as_tensor()          # GGUFParameter wrapping of everything computed from it)
        return F.linear(x, w.to(x.dtype), None if layer.bias is None else layer.bias.to(x.dtype))
    return forward


def build_quantized(cls, config: dict, sd: dict, dtype: torch.dtype, what: str, path) -> torch.nn.Module:
    """``cls(**config)`` holding ``sd`` (popped from it as it goes): quantized Linear weights as their
    blocks, every other tensor dequantized / cast to ``dtype``; Linear layers dequantize per call."""
    from accelerate import init_empty_weights

    from nodegen.models.module_build import _cast

    with init_empty_weights():
        module = cls(**config)
    linear = linear_weight_keys(module)
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    blocks: dict[str, torch.Tensor] = {}
    plain: dict[str, torch.Tensor] = {}
    for k in list(sd):
        v = sd.pop(k)
        if is_quantized(v) and k in linear:
            blocks[k] = v
        else:
            plain[k] = dequantized(v, dtype)
    wrong = [f"{k} {logical_shape(v)} (the model's {want[k]})" for k, v in blocks.items()
             if k in want and logical_shape(v) != want[k]]
    missing, unexpected = set(want) - set(blocks) - set(plain), set(blocks) - set(want)
    if wrong or unexpected:
        raise ModelKindError(f"{path}: the {what} weights do not fit the detected architecture: "
                             f"{'; '.join((wrong + sorted(unexpected))[:5])}")
    try:
        result = module.load_state_dict(_cast(plain, dtype), strict=False, assign=True)
    except RuntimeError as e:
        raise ModelKindError(f"{path}: the {what} weights do not fit the detected architecture: "
                             f"{str(e).splitlines()[0][:300]}") from e
    if missing or result.unexpected_keys:
        raise ModelKindError(f"{path}: the {what} weights do not fit the detected architecture: missing "
                             f"{sorted(missing)[:5]}, unexpected {sorted(result.unexpected_keys)[:5]}")
    for k, v in blocks.items():
        owner, _, name = k.rpartition(".")
        layer = module.get_submodule(owner)
        setattr(layer, name, v)
        layer.forward = _forward(layer)
    module._nodegen_compute_dtype = dtype
    module.dequantize_weight = dequantized  # for patches that widen a weight (nodegen.models.patching)
    module._nodegen_keep_dtype = True  # the model manager moves it without casting (as fp8 storage)
    return module.eval().requires_grad_(False)


def parameter_bytes(module: torch.nn.Module) -> int:
    """Bytes of the module's parameters as held (quantized weights: their blocks)."""
    return sum(p.numel() * p.element_size() for p in module.parameters())
