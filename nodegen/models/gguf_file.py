"""GGUF model files (llama.cpp's format, as city96's ComfyUI-GGUF nodes load them): the tensors of a
``.gguf`` file as a lazy state dict, each dequantized when it is read.

* Reading: the ``gguf`` package's ``GGUFReader`` (a memory map of the file); each tensor is copied
  out and dequantized only when asked for (:meth:`GGUFStateDict.pop` reads and forgets), so a loader
  holds the finished modules plus one tensor.
* Dequantizing: F32 / F16 / BF16 / F64 and integer tensors as stored; quantized blocks (Q4_0, Q4_1,
  Q5_0, Q5_1, Q8_0, the K-quants Q2_K..Q6_K, the IQ and TQ types: whatever ``gguf.quants.dequantize``
  covers) to float32, then to ``dtype``. With ``keep_quantized`` (the diffusion model loader sets it),
  2-D tensors of the types diffusers' torch dequantizers cover come back as their raw blocks
  (:mod:`nodegen.models.gguf_linear`): the loader keeps the Linear weights among them quantized and
  dequantizes the rest.
* Shapes: GGUF stores dimensions innermost first (reversed), or the original shape in the
  ``comfy.gguf.orig_shape.<name>`` field (city96's converter writes it for tensors it reshaped).
* Key names: diffusion models keep their original (BFL / SD3 / LDM) keys, with any
  ``model.diffusion_model.`` prefix removed; T5 encoders (``general.architecture`` ``t5`` /
  ``t5encoder``) use llama.cpp's names (``enc.blk.0.attn_q.weight``), renamed to transformers'
  (``encoder.block.0.layer.0.SelfAttention.q.weight``) with the table of city96's ``loader.py``.

The mapping quacks like :class:`nodegen.models.files.LazyStateDict` (``dtype``, ``shapes()``,
``pop``), so the safetensors loaders take GGUF files unchanged.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

import numpy as np
import torch

GGUF_MAGIC = b"GGUF"
#: ``general.architecture`` values of diffusion models (city96's IMG_ARCH_LIST) and of text encoders
IMAGE_ARCHS = frozenset({"flux", "sd1", "sdxl", "sd3", "aura", "hidream", "cosmos", "ltxv", "hyvid", "wan",
                         "lumina2", "qwen_image"})
TEXT_ARCHS = frozenset({"t5", "t5encoder", "llama", "qwen2vl"})
DIFFUSION_PREFIX = "model.diffusion_model."
ORIG_SHAPE_FIELD = "comfy.gguf.orig_shape."

#: llama.cpp T5 names -> transformers' (replaced in this order), as city96's ``T5_SD_MAP``
T5_NAMES = {"enc.": "encoder.", ".blk.": ".block.", "token_embd": "shared", "output_norm": "final_layer_norm",
            "attn_q": "layer.0.SelfAttention.q", "attn_k": "layer.0.SelfAttention.k",
            "attn_v": "layer.0.SelfAttention.v", "attn_o": "layer.0.SelfAttention.o",
            "attn_norm": "layer.0.layer_norm", "attn_rel_b": "layer.0.SelfAttention.relative_attention_bias",
            "ffn_up": "layer.1.DenseReluDense.wi_1", "ffn_down": "layer.1.DenseReluDense.wo",
            "ffn_gate": "layer.1.DenseReluDense.wi_0", "ffn_norm": "layer.1.layer_norm"}


class GGUFError(ValueError):
    """A GGUF file nodegen cannot read (not a GGUF, an unsupported quantization type); the safetensors
    loaders' :func:`nodegen.models.files.open_state_dict` raises it as a ``ModelFileError``."""


def is_gguf(path: str | os.PathLike) -> bool:
    """Whether the file starts with GGUF's magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def t5_key(name: str) -> str:
    for src, dst in T5_NAMES.items():
        name = name.replace(src, dst)
    return name


@cache
def _as_stored() -> dict:
    """GGML types read as plain arrays (no blocks)."""
    import gguf

    T = gguf.GGMLQuantizationType
    return {T.F32: torch.float32, T.F16: torch.float16, T.F64: torch.float64, T.I8: torch.int8,
            T.I16: torch.int16, T.I32: torch.int32, T.I64: torch.int64}


@cache
def dequantizable(qtype) -> bool:
    """Whether ``gguf.quants.dequantize`` can expand ``qtype`` (tried on one all-zero block)."""
    import gguf

    if qtype in _as_stored():
        return True
    size = gguf.GGML_QUANT_SIZES.get(qtype)
    if size is None:
        return False
    try:
        gguf.quants.dequantize(np.zeros((1, size[1]), dtype=np.uint8), qtype)
    except (NotImplementedError, ValueError, KeyError):
        return False
    return True


def supported_types() -> list[str]:
    import gguf

    return [t.name for t in gguf.GGMLQuantizationType if dequantizable(t)]


def dequantize(data: np.ndarray, qtype, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
    """One tensor's stored data (``GGUFReader``'s array) as a torch tensor of ``shape``: as stored for
    plain types (cast to ``dtype`` when floating), quantized types expanded to float32 then ``dtype``."""
    import gguf

    plain = _as_stored().get(qtype)
    if plain is not None:
        t = torch.from_numpy(np.array(data, copy=True)).view(plain).reshape(shape)
    elif qtype == gguf.GGMLQuantizationType.BF16:
        t = torch.from_numpy(np.array(data, copy=True)).view(torch.bfloat16).reshape(shape)
    else:
        t = torch.from_numpy(np.ascontiguousarray(gguf.quants.dequantize(data, qtype))).reshape(shape)
    if dtype is not None and t.is_floating_point() and t.dtype != dtype:
        t = t.to(dtype)
    return t


def _string_field(reader, name: str) -> str | None:
    field = reader.get_field(name)
    if field is None or not field.data:
        return None
    return bytes(field.parts[field.data[-1]]).decode("utf-8", "replace")


def _orig_shape(reader, name: str) -> tuple[int, ...] | None:
    field = reader.get_field(ORIG_SHAPE_FIELD + name)
    if field is None:
        return None
    return tuple(int(field.parts[i][0]) for i in field.data)


def _open_reader(path: Path):
    import gguf

    if not path.is_file():
        raise GGUFError(f"{path}: no such model file")
    if not is_gguf(path):
        raise GGUFError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gguf.GGUFReader(str(path), "r")
    except Exception as e:  # noqa: BLE001 - name the file, whatever the reader found wrong
        raise GGUFError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from e


class GGUFStateDict(Mapping):
    """The tensors of a GGUF file under their nodegen key names, dequantized (and cast to ``dtype``,
    when set; quantized tensors become float32 without it) as each is read."""

    def __init__(self, path: str | os.PathLike, dtype: torch.dtype | None = None,
                 keep_quantized: bool = False) -> None:
        self.path = Path(path)
        self.dtype = dtype
        self.keep_quantized = keep_quantized
        reader = _open_reader(self.path)
        self.arch = _string_field(reader, "general.architecture")
        tensors = list(reader.tensors)
        names = [t.name for t in tensors]
        strip = self.arch not in TEXT_ARCHS and any(n.startswith(DIFFUSION_PREFIX) for n in names)
        self._tensors: dict[str, tuple] = {}
        for t in tensors:
            if not dequantizable(t.tensor_type):
                qname = getattr(t.tensor_type, "name", repr(t.tensor_type))
                raise GGUFError(f"{self.path}: tensor {t.name!r} is stored as {qname}, a quantization type "
                                f"nodegen cannot dequantize (it reads {', '.join(supported_types())})")
            name = t.name
            if strip:
                if not name.startswith(DIFFUSION_PREFIX):
                    continue
                name = name[len(DIFFUSION_PREFIX):]
            if self.arch in ("t5", "t5encoder"):
                name = t5_key(name)
            shape = _orig_shape(reader, t.name) or tuple(int(v) for v in reversed(t.shape.tolist()))
            self._tensors[name] = (t, shape)
        self._reader = reader

    def qtypes(self) -> dict[str, int]:
        """How many tensors of each GGML type the file holds."""
        out: dict[str, int] = {}
        for t, _ in self._tensors.values():
            n = getattr(t.tensor_type, "name", repr(t.tensor_type))
            out[n] = out.get(n, 0) + 1
        return out

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: shape for k, (_, shape) in self._tensors.items()}

    def __getitem__(self, key: str) -> torch.Tensor:
        t, shape = self._tensors[key]
        try:
            if self.keep_quantized and self._stays_quantized(t, shape):
                from nodegen.models.gguf_linear import quantized

                return quantized(torch.from_numpy(np.array(t.data, copy=True)), t.tensor_type, shape)
            return dequantize(t.data, t.tensor_type, shape, self.dtype)
        except (ValueError, RuntimeError) as e:
            raise GGUFError(f"{self.path}: tensor {t.name!r} ({t.tensor_type.name}) does not fit its shape "
                            f"{list(shape)}: {e}") from e

    @staticmethod
    def _stays_quantized(t, shape: tuple[int, ...]) -> bool:
        """A 2-D tensor stored in its own shape (not reshaped by the converter) of a type diffusers
        dequantizes in torch."""
        from nodegen.models.gguf_linear import keeps_quantized

        stored = tuple(int(v) for v in reversed(t.shape.tolist()))
        return len(shape) == 2 and stored == shape and keeps_quantized(t.tensor_type)

    def pop(self, key: str, *default):
        if key not in self._tensors:
            if default:
                return default[0]
            raise KeyError(key)
        value = self[key]
        del self._tensors[key]
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._tensors))

    def __len__(self) -> int:
        return len(self._tensors)

    def __contains__(self, key: object) -> bool:
        return key in self._tensors

    def __repr__(self) -> str:
        return f"GGUFStateDict({str(self.path)!r}, arch={self.arch!r}, {len(self)} tensors)"


def read_arch(path: str | os.PathLike) -> str | None:
    """The file's ``general.architecture`` (None when it has none: stable-diffusion.cpp's files)."""
    return _string_field(_open_reader(Path(path)), "general.architecture")
