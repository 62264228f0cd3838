"""Reading model files safely: safetensors first; pickled ``.ckpt``/``.pt``/``.pth``/``.bin``
only through ``torch.load(weights_only=True)``."""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from nodegen.models.fp8_scaled import ScaledFP8, dequantize, find_layers, fp8_values

SAFETENSORS = (".safetensors", ".sft")


class ModelFileError(ValueError):
    """A model file cannot be read."""


def check_model_file(path: str | os.PathLike) -> Path:
    """``path`` when it is a non-empty regular file; else a :class:`ModelFileError` that says what it
    is (missing, a folder, a device or FIFO that would never end, an empty file)."""
    from nodegen.kernel.files import NotRegularFile, check_regular_file

    path = Path(path)
    try:
        check_regular_file(path, "model file")
    except FileNotFoundError as e:
        raise ModelFileError(f"{path}: no such model file") from e
    except (NotRegularFile, OSError) as e:
        raise ModelFileError(str(e) if isinstance(e, NotRegularFile) else f"{path}: {e.strerror or e}") from e
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: the model file is empty (0 bytes); download or copy it again")
    return path


def _is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def _gguf_state_dict(path: Path, dtype: torch.dtype | None = None):
    """A GGUF file's lazy mapping (:mod:`nodegen.models.gguf_file`: imported when a GGUF file is read)."""
    from nodegen.models.gguf_file import GGUFError, GGUFStateDict

    try:
        return GGUFStateDict(path, dtype)
    except GGUFError as e:
        raise ModelFileError(str(e)) from e


def _is_safetensors(path: Path) -> bool:
    if path.suffix.lower() in SAFETENSORS:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        return len(head) == 9 and head[8:9] == b"{"
    except OSError:
        return False


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "params_ema", "params", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                if key == "state_dict" or not any(isinstance(v, torch.Tensor) for v in obj.values()):
                    return _unwrap(inner, path)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ModelFileError(f"{path}: holds no tensors (found {type(obj).__name__})")


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a file, on the CPU, in the file's dtypes (GGUF: quantized ones as float32)."""
    path = check_model_file(path)
    if _is_gguf(path):
        return dict(_gguf_state_dict(path))
    if _is_safetensors(path):
        from safetensors.torch import load_file

        lazy = LazyStateDict(path)
        if lazy.quantized_layers:  # fp8 scaled: dequantized (float32), scales and markers left out
            return dict(lazy.items())
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001 - name the file
            raise ModelFileError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        obj = _safe_load(path, mmap=True)
    except RuntimeError:
        try:
            obj = _safe_load(path, mmap=False)
        except Exception as e:  # noqa: BLE001
            raise _pickle_error(path, e) from e
    except Exception as e:  # noqa: BLE001
        raise _pickle_error(path, e) from e
    return _unwrap(obj, path)


class _TrainingState:
    """Stands in for a training framework's object (PyTorch Lightning's ``ModelCheckpoint`` callback
    in ``v1-5-pruned-emaonly.ckpt`` and most LDM-trained ``.ckpt`` files): built empty, its state
    dropped, nothing of it run."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


#: modules whose classes a training checkpoint may pickle beside the weights; they are replaced
#: by :class:`_TrainingState` (only these: any other global still fails the safe load)
_TRAINING_MODULES = ("pytorch_lightning.", "lightning.", "lightning_fabric.")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _safe_load(path: Path, mmap: bool):
    """``torch.load(weights_only=True)``, with PyTorch Lightning's classes (and only those) read as
    empty stand-ins, as ComfyUI's checkpoint unpickler does."""
    allowed: list = []
    while True:
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as e:
            m = _GLOBAL.search(str(e))
            if m is None or not m.group(1).startswith(_TRAINING_MODULES) or len(allowed) > 32:
                raise
            allowed.append((_TrainingState, m.group(1)))


def check_scaling_factor(value: float, path: str | os.PathLike) -> float:
    """A VAE latent scaling factor must be a finite number between 1e-3 and 1e3 (nan or 1e-30
    would give an all-black image without an error)."""
    import math

    if not isinstance(value, (int, float)) or not math.isfinite(value) or not 1e-3 <= abs(value) <= 1e3:
        raise ModelFileError(f"{path}: the VAE scaling_factor {value!r} is not usable (expected a finite "
                             f"number between 0.001 and 1000, such as 0.18215)")
    return float(value)


def _pickle_error(path: Path, e: Exception) -> ModelFileError:
    return ModelFileError(
        f"{path}: cannot be loaded safely ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}). Pickled "
        f"files are only read with torch.load(weights_only=True); convert it to .safetensors")


def read_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a file; for safetensors from the header only (no tensor read)."""
    path = check_model_file(path)
    if _is_safetensors(path):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
                quantized = f.metadata() is not None and "_quantization_metadata" in f.metadata()
        except Exception as e:  # noqa: BLE001
            raise ModelFileError(f"{path}: not a readable safetensors file ({e})") from e
        if quantized or any(k.endswith(("scaled_fp8", ".scale_weight", ".comfy_quant")) for k in shapes):
            return LazyStateDict(path).shapes()  # without the fp8 scales and markers (nodegen.models.fp8_scaled)
        return shapes
    return {k: tuple(v.shape) for k, v in load_state_dict(path).items()}


def file_dtype(sd: dict[str, torch.Tensor]) -> torch.dtype:
    """The dtype most floating tensors have."""
    counts: dict[torch.dtype, int] = {}
    for v in sd.values():
        if v.is_floating_point():
            counts[v.dtype] = counts.get(v.dtype, 0) + v.numel()
    return max(counts, key=counts.get) if counts else torch.float32


#: safetensors dtype names -> torch dtypes (others are read through the safetensors library).
_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
              "U8": torch.uint8, "BOOL": torch.bool}


class LazyStateDict(Mapping):
    """The tensors of a safetensors file, each read (and cast to ``dtype``) only when asked
    for, so a loader holds little more than the finished modules. :meth:`pop` reads and forgets.

    Tensors are read with ``pread`` into freshly allocated (aligned) memory, not through a
    memory map: the pages of a mapped file count in the process's resident memory until it is
    unmapped (2 GB for an fp16 SD1.5 file, on top of the 4 GB of fp32 weights), while read
    pages stay in the kernel's page cache only. Peak memory is the loaded weights plus one tensor.
    """

    def __init__(self, path: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        self.path = check_model_file(path)
        self.dtype = dtype
        try:
            self._fd = os.open(str(self.path), os.O_RDONLY)
            head = os.pread(self._fd, 8, 0)
            n = int.from_bytes(head, "little")
            if len(head) != 8 or n <= 0 or n > 100 * 2**20:
                raise ValueError("bad header length")
            header = json.loads(os.pread(self._fd, n, 8))
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
        except Exception as e:  # noqa: BLE001
            raise ModelFileError(f"{self.path}: not a readable safetensors file ({e})") from e
        self._start = 8 + n
        self._info = {k: v for k, v in header.items() if k != "__metadata__"}
        self._st = None  # the safetensors library, for dtypes not in _ST_DTYPES
        # ComfyUI's fp8 scaled weights (nodegen.models.fp8_scaled): the scales and markers are not keys
        # of the model; each quantized weight is read dequantized, or kept quantized (keep_quantized)
        meta = header.get("__metadata__")
        self.quantized_layers = find_layers(self._info, meta if isinstance(meta, dict) else None, self._read,
                                            self.path)
        self._keys = dict.fromkeys(k for k in self._info if k not in self.quantized_layers.hidden)
        #: scaled fp8 weights are returned as ScaledFP8 parameters (fp8 values + scale), not dequantized
        self.keep_quantized = False

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None

    def _read(self, key: str) -> torch.Tensor:
        info = self._info[key]
        dtype = _ST_DTYPES.get(info["dtype"])
        if dtype is None:
            if self._st is None:
                from safetensors import safe_open

                self._st = safe_open(str(self.path), framework="pt").__enter__()
            return self._st.get_tensor(key)
        begin, end = info["data_offsets"]
        raw = torch.empty(end - begin, dtype=torch.uint8)
        view = memoryview(raw.numpy()) if end > begin else memoryview(b"")
        done = 0
        while done < end - begin:
            got = os.preadv(self._fd, [view[done:]], self._start + begin + done)
            if got <= 0:
                raise ModelFileError(f"{self.path}: the file ends inside tensor {key!r}")
            done += got
        return raw.view(dtype).reshape(info["shape"])

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(key)
        if self.quantized_layers.refused:
            raise self.quantized_layers.refusal(self.path)
        if key in self.quantized_layers.scales:
            return self._scaled(key)
        t = self._read(key)
        if self.dtype is not None and t.is_floating_point() and t.dtype != self.dtype:
            t = t.to(self.dtype)
        return t

    def _scaled(self, key: str) -> torch.Tensor:
        raw, scale = self._read(key), self._read(self.quantized_layers.scales[key]).float().reshape(())
        if self.keep_quantized:
            return ScaledFP8(fp8_values(raw), scale)
        return dequantize(raw, scale, self.dtype or torch.float32)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def pop(self, key: str) -> torch.Tensor:
        t = self[key]
        del self._keys[key]
        return t

    def shapes(self) -> dict[str, tuple[int, ...]]:
        if self.quantized_layers.refused:
            raise self.quantized_layers.refusal(self.path)
        return {k: tuple(self._info[k]["shape"]) for k in self._keys}


def open_state_dict(path: str | os.PathLike, dtype: torch.dtype | None = None):
    """A mapping of a file's tensors: lazy for safetensors and GGUF (:mod:`nodegen.models.gguf_file`),
    loaded (memory-mapped where possible) for pickled files."""
    path = check_model_file(path)
    if _is_gguf(path):
        return _gguf_state_dict(path, dtype)
    if _is_safetensors(path):
        return LazyStateDict(path, dtype)
    return load_state_dict(path)


def shapes_of(sd) -> dict[str, tuple[int, ...]]:
    if isinstance(sd, LazyStateDict) or callable(getattr(sd, "shapes", None)):
        return sd.shapes()
    return {k: tuple(v.shape) for k, v in sd.items()}
