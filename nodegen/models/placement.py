"""Where a module's weights are: device, dtype, size; and moving a module that no manager owns."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def module_bytes(module: torch.nn.Module) -> int:
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        total += t.numel() * t.element_size()
    return total


def module_device(module: torch.nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def module_dtype(module: torch.nn.Module) -> torch.dtype:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def compute_dtype(device: torch.device, gpu_dtype: torch.dtype = torch.float16) -> torch.dtype:
    """The dtype weights compute in on ``device``: ``gpu_dtype`` on CUDA, float32 elsewhere."""
    return gpu_dtype if device.type == "cuda" else torch.float32


@contextmanager
def placed(module: torch.nn.Module, device: str | torch.device | None = None,
           dtype: torch.dtype | None = None) -> Iterator[torch.nn.Module]:
    """``module`` moved to ``device`` (default: where it is) in ``dtype`` (default: the device's
    compute dtype) for the block, for objects built in memory without a model manager."""
    dev = torch.device(device) if device is not None else module_device(module)
    dt = dtype or compute_dtype(dev)
    if getattr(module, "_nodegen_keep_dtype", False):  # fp8 storage keeps its dtypes (nodegen.models.fp8)
        dt = module_dtype(module)
    if module_device(module) != dev or module_dtype(module) != dt:
        module.to(device=dev, dtype=dt)
    yield module
