"""Weight patches (LoRA and the like) applied on use, never permanently.

A patch set is a list of ``(patch_dict, strength)``. ``patch_dict`` maps a parameter name of
the target module (diffusers names, e.g. ``down_blocks.0.attentions.0...to_q.weight``) to a
delta: a tensor of the parameter's shape, or a callable ``(weight: Tensor) -> Tensor`` giving
the delta for that weight (computed in float32 on the weight's device; LoRA uses
``up @ down * alpha / rank``). The patched weight is ``W + sum(strength * delta)``.

:func:`patched` applies a patch set to a module for the duration of a ``with`` block and puts
the original tensors back afterwards, so clones that share the base weights stay independent.

A weight kept quantized (GGUF blocks, scaled fp8: :mod:`nodegen.models.gguf_linear`) is not replaced: its
deltas are handed to its layer (``forward_patches``), which applies them to the weight it
dequantizes for each call; one that a delta widens is dequantized (the module's ``dequantize_weight``),
patched and held for the block.

Two kinds of delta go beyond ``W + delta`` (Flux control LoRAs: :mod:`nodegen.models.flux_control_lora`):
a callable with ``widened_shape`` is larger than its weight, which is zero-padded to that shape
first (and every other delta for it zero-padded alike, as diffusers pads LoRAs for a widened
layer); one with ``replaces = True`` gives the weight's new value, whatever the strength.
A callable with ``strength_aware = True`` is called ``delta(weight, strength)`` and gives the change
with the strength applied (OFT and BOFT, whose change ComfyUI does not scale linearly).
A :class:`Scale` multiplies the weight as patched so far (ComfyUI's ``strength_model``: patches
before it are scaled with the weight, those after it are not).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from nodegen.models.fp8_scaled import is_scaled

Delta = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]
PatchList = list[tuple[dict[str, Delta], float]]


def delta_value(delta: Delta, weight: torch.Tensor) -> torch.Tensor:
    d = delta(weight) if callable(delta) else delta
    d = d.to(device=weight.device, dtype=torch.float32)
    want = tuple(getattr(delta, "widened_shape", None) or weight.shape)
    if tuple(d.shape) != want:
        if d.numel() == math.prod(want):
            d = d.reshape(want)
        else:
            raise ValueError(f"patch of shape {tuple(d.shape)} does not fit weight {tuple(weight.shape)}")
    return d


def _padded(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``t`` zero-padded at the end of each dimension to ``shape``."""
    if tuple(t.shape) == shape:
        return t
    out = t.new_zeros(shape)
    out[tuple(slice(0, n) for n in t.shape)] = t
    return out


def _widest(weight: torch.Tensor, deltas: list[tuple[Delta, float]]) -> tuple[int, ...]:
    shapes = [tuple(s) for d, _ in deltas if (s := getattr(d, "widened_shape", None)) is not None]
    shapes = [s for s in shapes if len(s) == weight.ndim]
    return tuple(max(dims) for dims in zip(weight.shape, *shapes, strict=True))


class Scale:
    """A delta that multiplies the weight as patched so far by ``factor`` (the strength is not used).
    Called as a plain delta it gives ``weight * (factor - 1)``."""

    def __init__(self, factor: float) -> None:
        self.factor = float(factor)

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.float() * (self.factor - 1.0)


def patched_weight(weight: torch.Tensor, deltas: list[tuple[Delta, float]]) -> torch.Tensor:
    """``weight`` (float32) with ``(delta, strength)`` pairs applied."""
    shape = _widest(weight, deltas)
    total = _padded(weight.float(), shape)
    for delta, strength in deltas:
        if isinstance(delta, Scale):
            total = total * delta.factor
            continue
        if getattr(delta, "strength_aware", False):  # its own rule for the strength (OFT: ComfyUI's)
            total = total + _padded(delta_value(lambda w, f=delta, s=strength: f(w, s), weight), shape)
            continue
        d = _padded(delta_value(delta, weight), shape)
        total = d if getattr(delta, "replaces", False) else total + d * strength
    return total


def _strip(name: str, prefix: str | None) -> str | None:
    if prefix is None:
        return name
    return name[len(prefix):] if name.startswith(prefix) else None


@contextmanager
def patched(module: torch.nn.Module, patches: PatchList, prefix: str | None = None) -> Iterator[Any]:
    """Apply ``patches`` to ``module`` inside the block. With ``prefix``, only keys starting
    with it are used (prefix removed), e.g. ``"text_encoder_2."``."""
    active = [(pd, s) for pd, s in patches if s != 0]
    if not active:
        yield module
        return
    params = dict(module.named_parameters())
    by_param: dict[str, list[tuple[Delta, float]]] = {}
    for patch_dict, strength in active:
        for key, delta in patch_dict.items():
            name = _strip(key, prefix)
            if name is None:
                continue
            if name not in params:
                raise KeyError(f"patch targets unknown weight {name!r} of {type(module).__name__}")
            by_param.setdefault(name, []).append((delta, float(strength)))
    backup: dict[str, torch.Tensor] = {}
    deferred: list[tuple[torch.Tensor, list | None]] = []
    # the module may hold patched weights wider than it stores them (text encoders kept in half
    # precision on the CPU compute in float32: nodegen.models.clip_text_model)
    held = getattr(module, "patch_dtype", lambda w: w.dtype)
    try:
        with torch.no_grad():
            # one weight at a time: at most one patched weight is in flight besides the originals
            for name, deltas in by_param.items():
                p = params[name]
                if is_quantized(p):
                    outer = getattr(p, "forward_patches", None) or []  # a patched() around this one
                    if not any(getattr(d, "widened_shape", None) for d, _ in deltas):
                        deferred.append((p, getattr(p, "forward_patches", None)))
                        p.forward_patches = outer + deltas
                        continue
                    total = patched_weight(module.dequantize_weight(p), outer + deltas)
                    backup[name] = p.data
                    p.data = total.to(getattr(module, "_nodegen_compute_dtype", None) or torch.float32)
                    continue
                total = patched_weight(p.data, deltas)
                backup[name] = p.data
                p.data = total.to(held(p.data))
        yield module
    finally:
        for p, before in reversed(deferred):
            p.forward_patches = before
        for name, data in backup.items():
            params[name].data = data


def is_quantized(t: torch.Tensor) -> bool:
    """A weight held as GGUF blocks or as ComfyUI's scaled fp8 (:mod:`nodegen.models.gguf_linear`)."""
    return (getattr(t, "quant_type", None) is not None and t.dtype == torch.uint8) or is_scaled(t)
