"""ComfyUI's "fp8 scaled" weights: float8 values with a per-tensor float32 scale, the real weight being
``fp8.to(float32) * scale``. Files such as ``t5xxl_fp8_e4m3fn_scaled.safetensors``,
``sd3.5_large_fp8_scaled.safetensors``, ``clip_l_fp8_scaled`` / Flux / Chroma ``*_fp8_scaled`` hold them.

Two layouts, both read here (as ComfyUI's ``comfy/utils.py`` ``convert_old_quants`` and ``comfy/ops.py``
read them):

* **Legacy scaled fp8**: a marker tensor ``scaled_fp8`` under the model's prefix (e.g.
  ``model.diffusion_model.scaled_fp8``; its dtype names the fp8 type; two elements mean "full precision
  matrix multiply"), and for each quantized Linear ``X``: ``X.weight`` (fp8), ``X.scale_weight`` (float32,
  one value) and optionally ``X.scale_input`` (an activation scale).
* **Mixed precision ("comfy_quant")**: per-layer formats in the safetensors header
  (``__metadata__["_quantization_metadata"]`` = ``{"layers": {X: {"format": ...}}}``) and/or a uint8 JSON
  tensor ``X.comfy_quant`` per layer; an fp8 layer has ``X.weight`` (fp8), ``X.weight_scale`` (float32,
  one value) and optionally ``X.input_scale``.

Activation scales (``scale_input`` / ``input_scale``) are ignored: they only matter to fp8 matrix
multiplication (``torch._scaled_mm``), which ComfyUI uses only on GPUs with fp8 compute; without it
(the CPU, older GPUs) ComfyUI computes ``x @ (fp8 * scale)``, as nodegen always does. Formats other
than per-tensor ``float8_e4m3fn`` / ``float8_e5m2`` (int8, nvfp4, mxfp8, row- or block-wise scales)
are refused by name, never loaded as raw values.

:class:`nodegen.models.files.LazyStateDict` applies :func:`find_layers` to every safetensors file it opens:
the scale keys and markers disappear from its keys, and each quantized weight is read dequantized
(float32, or the dict's dtype), or kept as a :class:`ScaledFP8` parameter (``keep_quantized``: the flow
transformers, whose Linear layers then dequantize per call, :mod:`nodegen.models.gguf_linear`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from nodegen.models.detect import ModelKindError

FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
#: the mixed-precision formats nodegen dequantizes (per-tensor scale)
FP8_FORMATS = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}
#: the auxiliary tensors of a quantized layer (never weights of the model)
_AUX = ("scale_weight", "scale_input", "weight_scale", "weight_scale_2", "input_scale", "comfy_quant")


class UnsupportedQuantization(ModelKindError):
    """A file quantized in a format nodegen cannot dequantize."""


@dataclass
class QuantLayers:
    """The quantized layers of one file: weight key -> its scale key, and the keys to hide."""

    scales: dict[str, str] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)
    #: weight key -> format nodegen refuses
    refused: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.scales or self.refused)

    def refusal(self, path) -> UnsupportedQuantization:
        key, fmt = next(iter(self.refused.items()))
        return UnsupportedQuantization(
            f"{path}: {len(self.refused)} layers (e.g. {key.removesuffix('.weight')!r}) are quantized as {fmt!r}, "
            f"which nodegen cannot load (it reads ComfyUI's per-tensor scaled float8_e4m3fn / float8_e5m2 "
            f"weights); use an fp16, bf16, fp8 or fp8_scaled version of this model")


def _marked(info: dict) -> bool:
    return any(k == "scaled_fp8" or k.endswith((".scaled_fp8", ".comfy_quant", ".scale_weight")) for k in info)


def find_layers(info: dict[str, dict], metadata: dict | None, read: Callable[[str], torch.Tensor],
                path) -> QuantLayers:
    """The quantized layers of a safetensors file from its header (``info``: key -> {dtype, shape}),
    its ``__metadata__`` and ``read`` (for the small ``comfy_quant`` tensors)."""
    raw_meta = (metadata or {}).get("_quantization_metadata")
    out = QuantLayers()
    if raw_meta is None and not _marked(info):
        return out
    formats: dict[str, str] = {}  # layer -> mixed-precision format
    if raw_meta is not None:
        try:
            layers = json.loads(raw_meta)["layers"]
            formats.update({k: str(v.get("format")) for k, v in layers.items()})
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UnsupportedQuantization(f"{path}: unreadable _quantization_metadata in the file's header "
                                          f"({e})") from e
    for k in info:
        if k.endswith(".comfy_quant"):
            layer = k.removesuffix(".comfy_quant")
            try:
                formats.setdefault(layer, str(json.loads(bytes(read(k).tolist()).decode("utf-8")).get("format")))
            except (ValueError, AttributeError, UnicodeDecodeError) as e:
                raise UnsupportedQuantization(f"{path}: unreadable quantization config {k!r} ({e})") from e
    out.hidden.update(k for k in info if k == "scaled_fp8" or k.endswith(".scaled_fp8"))
    for k in info:  # legacy: every X.scale_weight next to an X.weight
        if k.endswith(".scale_weight") and (layer := k.removesuffix(".scale_weight")) + ".weight" in info:
            formats.setdefault(layer, "float8_e4m3fn")
            if formats[layer] in FP8_FORMATS and _numel(info[k]["shape"]) == 1:
                out.scales[layer + ".weight"] = k
            elif formats[layer] in FP8_FORMATS:
                out.refused[layer + ".weight"] = f"scaled fp8 with a {list(info[k]['shape'])} scale_weight"
    for layer, fmt in formats.items():
        weight = layer + ".weight"
        if weight not in info:
            continue
        out.hidden.update(f"{layer}.{a}" for a in _AUX if f"{layer}.{a}" in info)
        if weight in out.scales or weight in out.refused:
            continue
        scale = info.get(layer + ".weight_scale")
        if fmt not in FP8_FORMATS:
            out.refused[weight] = fmt
        elif scale is None:
            out.refused[weight] = f"{fmt} without a weight_scale"
        elif _numel(scale["shape"]) != 1:
            out.refused[weight] = f"{fmt} with a {list(scale['shape'])} weight_scale (row- or block-wise scales)"
        else:
            out.scales[weight] = layer + ".weight_scale"
    return out


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def fp8_values(raw: torch.Tensor) -> torch.Tensor:
    """A quantized weight's stored values as fp8 (a weight stored wider is rounded to e4m3fn, as ComfyUI)."""
    return raw if raw.dtype in FP8 else raw.to(torch.float8_e4m3fn)


def dequantize(raw: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``raw`` (fp8) times its ``scale`` (one float32 value), computed in float32, then ``dtype``. The
    scale is kept on the CPU and applied as a number: no device copy or sync per layer call."""
    return (fp8_values(raw).to(torch.float32) * float(scale)).to(dtype)


def _flat(obj) -> list:
    if isinstance(obj, (list, tuple)):
        return [x for o in obj for x in _flat(o)]
    if isinstance(obj, dict):
        return [x for o in obj.values() for x in _flat(o)]
    return [obj]


def _map(obj, fn):
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    return fn(obj)


#: methods that hand out a tensor's values as numbers (those of a ScaledFP8: its dequantized ones)
_VALUE_METHODS = {"item", "tolist", "numpy", "__array__", "__float__", "__int__", "__bool__", "__format__"}


def _reads_values(func, args, kwargs) -> bool:
    """Whether ``func`` answers from the tensors' values (``torch.equal``, ``allclose``, ``item``)
    rather than their metadata: a value method, or a function of two tensors or more."""
    return (getattr(func, "__name__", "") in _VALUE_METHODS
            or sum(isinstance(a, torch.Tensor) for a in _flat((args, kwargs))) >= 2)


def _fp8_tensors(out) -> bool:
    items = out if isinstance(out, (list, tuple)) else [out]
    return bool(items) and all(isinstance(t, torch.Tensor) and t.dtype in FP8 for t in items)


class ScaledFP8(torch.nn.Parameter):
    """A weight kept as its fp8 values plus a per-tensor ``scale`` (float32, one value, held on the CPU
    whatever device the values are on): it stands for ``values * scale``. Moves, views, splits and
    joins (same scale) of it stay :class:`ScaledFP8` (so the Flux / SD3 / Chroma key conversions keep
    it fp8); every other operation (a cast to a wider dtype, arithmetic) runs on the dequantized
    values, so no code path can see the raw fp8 numbers as the weight."""

    quant_type = "scaled_fp8"

    def __new__(cls, data: torch.Tensor, scale: torch.Tensor, requires_grad: bool = False):
        self = torch.Tensor._make_subclass(cls, data, requires_grad)
        self.scale = scale.detach().to(device="cpu", dtype=torch.float32).reshape(())
        return self

    def as_tensor(self) -> torch.Tensor:
        """The stored values (a plain tensor)."""
        return torch.Tensor._make_subclass(torch.Tensor, self, self.requires_grad)

    def __deepcopy__(self, memo):
        return ScaledFP8(self.as_tensor().clone(), self.scale.clone(), self.requires_grad)

    def __repr__(self) -> str:
        return f"ScaledFP8({tuple(self.shape)}, {self.dtype}, scale={float(self.scale)})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        with torch._C.DisableTorchFunctionSubclass():
            scaled = [a for a in _flat((args, kwargs)) if isinstance(a, ScaledFP8) and a.dtype in FP8]
            try:
                out = func(*args, **kwargs)
            except (RuntimeError, TypeError, NotImplementedError):  # an op fp8 does not have
                out = None
            else:
                if not scaled:
                    return out
                if not any(isinstance(t, torch.Tensor) for t in _flat(out)) and not _reads_values(func, args, kwargs):
                    return out  # shape, dtype, device, ...
                if _fp8_tensors(out) and len({float(a.scale) for a in scaled}) == 1:
                    s = scaled[0].scale
                    return _map(out, lambda t: cls(t, s, t.requires_grad))
            plain = _map((args, kwargs), lambda a: dequantize(a.as_tensor(), a.scale)
                         if isinstance(a, ScaledFP8) and a.dtype in FP8 else a)
            return func(*plain[0], **plain[1])


def is_scaled(t) -> bool:
    return isinstance(t, ScaledFP8) and t.dtype in FP8


def dequantized(t: ScaledFP8, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return dequantize(t.as_tensor(), t.scale, dtype)
