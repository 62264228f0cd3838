"""The model manager: loads model files once, places weights on devices, offloads by LRU.

* Loading is lazy and cached across runs, keyed by resolved path + size + mtime (+ options):
  :meth:`ModelManager.load_checkpoint`, :meth:`load_vae`, :meth:`load_lora`.
* :meth:`ModelManager.use` (a context manager) moves a module to a device in the manager's
  dtype for that device (fp16 on CUDA unless told otherwise, fp32 on CPU) and keeps it there
  afterwards; when the modules resident on a device exceed its byte budget, the least recently
  used ones that are not in use are moved back to the host (CPU).
* The model objects (:mod:`nodegen.models.objects`) call :meth:`use` through the manager they
  were loaded with. There is no process-global manager: the engine owns one and hands it to nodes
  as ``ctx.models``; objects built in memory without one are placed directly
  (:func:`nodegen.models.placement.placed`), with no budget.

The engine constructs ``ModelManager()`` with no arguments.
"""

from __future__ import annotations

import os
import stat
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from nodegen.models.placement import compute_dtype, module_bytes, module_device, module_dtype

GiB = 1024**3


def file_key(path: str | os.PathLike) -> tuple[str, int, int]:
    """(resolved path, size, mtime_ns) of a file or a diffusers folder (newest file inside)."""
    p = os.path.realpath(path)
    st = os.stat(p)
    if stat.S_ISDIR(st.st_mode):
        size, mtime = 0, st.st_mtime_ns
        for root, _dirs, files in os.walk(p):
            for f in files:
                s = os.stat(os.path.join(root, f))
                size += s.st_size
                mtime = max(mtime, s.st_mtime_ns)
        return p, size, mtime
    return p, st.st_size, st.st_mtime_ns


class ModelManager:
    """Owns loaded models. ``budgets`` maps a device type ("cuda", "cpu") to the bytes of
    weights allowed there (default: 80% of the GPU's memory for "cuda", unlimited for CPU)."""

    def __init__(self, *, device: str | torch.device | None = None, budgets: dict[str, int] | None = None,
                 gpu_dtype: torch.dtype = torch.float16, max_cached_files: int = 8) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.gpu_dtype = gpu_dtype
        self.budgets: dict[str, int | None] = {"cpu": None}
        if torch.cuda.is_available():
            self.budgets["cuda"] = int(torch.cuda.get_device_properties(0).total_memory * 0.8)
        self.budgets.update(budgets or {})
        self.max_cached_files = max_cached_files
        self._lock = threading.RLock()
        #: id(module) -> weak reference, least recently used first
        self._resident: OrderedDict[int, weakref.ref] = OrderedDict()
        self._in_use: dict[int, int] = {}
        self._files: OrderedDict[tuple, Any] = OrderedDict()
        #: (module name, from device, to device) per move, for tests and logs
        self.moves: list[tuple[str, str, str]] = []

    # ----- dtype / device policy -------------------------------------------------------------
    def dtype_for(self, device: str | torch.device | None = None) -> torch.dtype:
        return compute_dtype(torch.device(device) if device is not None else self.device, self.gpu_dtype)

    # ----- placement ------------------------------------------------------------------------
    def _budget(self, dev: torch.device) -> int | None:
        return self.budgets.get(dev.type)

    def _live(self) -> list[tuple[int, torch.nn.Module]]:
        out = []
        for mid, ref in list(self._resident.items()):
            m = ref()
            if m is None:
                del self._resident[mid]
            else:
                out.append((mid, m))
        return out

    def _resident_bytes(self, dev: torch.device) -> int:
        return sum(module_bytes(m) for _, m in self._live() if self._device_of(m).type == dev.type)

    def resident(self, device: str | torch.device) -> list[torch.nn.Module]:
        """Modules on ``device``'s type, least recently used first."""
        dev = torch.device(device)
        return [m for _, m in self._live() if self._device_of(m).type == dev.type]

    def _device_of(self, module: torch.nn.Module) -> torch.device:
        return module_device(module)

    def _move(self, module: torch.nn.Module, device: torch.device, dtype: torch.dtype | None) -> None:
        if getattr(module, "_nodegen_keep_dtype", False):  # fp8 storage (nodegen.models.fp8)
            dtype = None
        src = self._device_of(module)
        if src == device and (dtype is None or module_dtype(module) == dtype):
            return
        module.to(device=device, dtype=dtype)
        self.moves.append((type(module).__name__, str(src), str(device)))

    def _make_room(self, dev: torch.device, need: int, keep: int) -> None:
        budget = self._budget(dev)
        if budget is None:
            return
        if dev.type == "cpu":  # nothing lower to offload to
            return
        for mid, m in self._live():
            if self._resident_bytes(dev) + need <= budget:
                return
            if mid == keep or self._in_use.get(mid) or self._device_of(m).type != dev.type:
                continue
            self._move(m, torch.device("cpu"), None)
        # over budget with everything in use: go ahead anyway (the budget is a target)

    @contextmanager
    def use(self, module: torch.nn.Module, device: str | torch.device | None = None,
            dtype: torch.dtype | None = None) -> Iterator[torch.nn.Module]:
        """Place ``module`` on ``device`` in ``dtype`` for the block (and leave it there)."""
        dev = torch.device(device) if device is not None else self.device
        if dtype is None:
            dtype = self.dtype_for(dev)
        with self._lock:
            mid = id(module)
            need = 0 if self._device_of(module).type == dev.type else module_bytes(module)
            self._make_room(dev, need, mid)
            self._move(module, dev, dtype)
            self._resident[mid] = weakref.ref(module)
            self._resident.move_to_end(mid)
            self._in_use[mid] = self._in_use.get(mid, 0) + 1
        try:
            yield module
        finally:
            with self._lock:
                self._in_use[mid] -= 1
                if not self._in_use[mid]:
                    del self._in_use[mid]

    def offload_all(self) -> None:
        with self._lock:
            for _, m in self._live():
                self._move(m, torch.device("cpu"), None)

    # ----- file loading (cached) --------------------------------------------------------------
    def _cached(self, key: tuple, load) -> Any:
        with self._lock:
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]
        value = load()
        with self._lock:
            self._files[key] = value
            while len(self._files) > self.max_cached_files:
                self._files.popitem(last=False)
        return value

    def cached(self, key: tuple, load) -> Any:
        """``load()``'s result, kept under ``key`` with the other loaded files (least recently used dropped)."""
        return self._cached(key, load)

    def load_checkpoint(self, path: str | os.PathLike, prediction: str = "auto"):
        """``(DiffusionModel, TextEncoder, VAEModel)`` of a single file or diffusers folder."""
        from nodegen.models import loader

        key = ("checkpoint", *file_key(path), prediction)
        return self._cached(key, lambda: loader.load_checkpoint(path, prediction=prediction, manager=self))

    def load_vae(self, path: str | os.PathLike, scaling_factor: float | None = None):
        from nodegen.models import loader

        key = ("vae", *file_key(path), scaling_factor)
        return self._cached(key, lambda: loader.load_vae(path, manager=self, scaling_factor=scaling_factor))

    def load_diffusion_model(self, path: str | os.PathLike, weight_dtype: str = "default"):
        """MODEL of an SD3 / Flux diffusion model file (UNETLoader)."""
        from nodegen.models import flow_loader

        key = ("diffusion_model", *file_key(path), weight_dtype)
        return self._cached(key, lambda: flow_loader.load_diffusion_model(path, weight_dtype, manager=self))

    def load_text_encoders(self, paths: list, family: str = "auto"):
        """CLIP of one to three SD3 / Flux text encoder files."""
        from nodegen.models import flow_loader

        key = ("text_encoders", *(file_key(p) for p in paths), family)
        return self._cached(key, lambda: flow_loader.load_text_encoders(paths, family, manager=self))

    def load_lora(self, path: str | os.PathLike):
        """The parsed LoRA (:class:`nodegen.models.lora.LoraFile`) of a file."""
        from nodegen.models import lora

        key = ("lora", *file_key(path))
        return self._cached(key, lambda: lora.read_lora(path))

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self._resident.clear()

