"""Textual-inversion embeddings (``embedding:name`` in prompts).

Files (in the ``embeddings`` model folder; the name may omit the extension):

* A1111 / ComfyUI safetensors: ``emb_params`` ``[n, d]``; SDXL: ``clip_l`` ``[n, 768]`` and
  ``clip_g`` ``[n, 1280]`` (one set per text encoder);
* A1111 ``.pt``: ``{"string_to_param": {"*": [n, d]}, ...}``, read with
  ``torch.load(weights_only=True)`` only;
* diffusers ``learned_embeds`` (``.bin`` / ``.safetensors``): ``{"<token>": [d] or [n, d]}``.

An embedding of ``n`` vectors takes ``n`` token positions; each vector replaces the token
embedding at its position (the position embedding is still added), which is what diffusers'
``load_textual_inversion`` does by adding tokens to the vocabulary. See
:mod:`nodegen.models.clip_encode` for where they enter the encoder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nodegen.kernel.lazy import lazy_import

# imported on first use: the prompt nodes take text_fingerprint while node types are listed
torch = lazy_import("torch")

EXTENSIONS = (".safetensors", ".pt", ".bin", ".pth", ".sft")
#: Per family: the embedding key of each text encoder (None: the file's single tensor).
ENCODER_KEYS = {"sd1": (None,), "sd2": (None,), "sdxl": ("clip_l", "clip_g"), "sdxl_refiner": ("clip_g",)}


@dataclass
class Embedding:
    name: str
    path: str
    vectors: dict[str, torch.Tensor]  # key ("emb_params", "clip_l", "clip_g", ...) -> [n, d]

    @property
    def length(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])

    def for_encoder(self, key: str | None, width: int) -> torch.Tensor:
        """The ``[n, width]`` vectors for the text encoder with embedding key ``key``."""
        if key is not None and key in self.vectors:
            v = self.vectors[key]
        elif len(self.vectors) == 1:
            v = next(iter(self.vectors.values()))
        else:
            raise ValueError(f"embedding {self.name!r} ({self.path}) has vectors {sorted(self.vectors)} and none "
                             f"for this text encoder ({key or 'single'})")
        if v.shape[-1] != width:
            raise ValueError(f"embedding {self.name!r} ({self.path}) has vectors of width {v.shape[-1]}; this "
                             f"text encoder needs {width}: is it made for another model family?")
        return v


def _as_matrix(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().float()
    return t[None] if t.ndim == 1 else t.reshape(-1, t.shape[-1])


def _pickled(path: Path) -> dict:
    from nodegen.models.files import ModelFileError

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - name the file
        raise ModelFileError(f"{path}: cannot be loaded safely ({type(e).__name__}: {str(e)[:200]}); embeddings "
                             f"in pickled files are read with torch.load(weights_only=True) only") from e


def load_embedding(path: str | os.PathLike, name: str | None = None) -> Embedding:
    from nodegen.models.files import ModelFileError, load_state_dict

    p = Path(path)
    name = name or p.stem
    if p.suffix.lower() in (".safetensors", ".sft"):
        raw: dict = load_state_dict(p)
    else:
        raw = _pickled(p)
        if not isinstance(raw, dict):
            raise ModelFileError(f"{p}: not an embedding (found {type(raw).__name__})")
    if isinstance(raw.get("string_to_param"), dict):  # A1111 .pt
        raw = {"emb_params": next(iter(raw["string_to_param"].values()))}
    tensors = {k: _as_matrix(v) for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelFileError(f"{p}: holds no embedding vectors")
    if "clip_l" in tensors or "clip_g" in tensors:
        tensors = {k: v for k, v in tensors.items() if k in ("clip_l", "clip_g")}
    elif len(tensors) > 1:
        if "emb_params" not in tensors:
            raise ModelFileError(f"{p}: holds several tensors ({', '.join(sorted(tensors)[:4])}); "
                                 f"not an embedding this program reads")
        tensors = {"emb_params": tensors["emb_params"]}
    if len({v.shape[0] for v in tensors.values()}) != 1:
        raise ModelFileError(f"{p}: its per-encoder vectors differ in count")
    return Embedding(name, str(p), tensors)


class EmbeddingLookup:
    """``name -> Embedding`` through a resolver ``(name) -> path or None`` (tries the name, then
    with each extension); files are read once."""

    def __init__(self, resolve: Callable[[str], str | os.PathLike | None], where: str = "") -> None:
        self.resolve = resolve
        self.where = where
        self._cache: dict[str, Embedding | None] = {}

    def find(self, name: str) -> Embedding | None:
        if name not in self._cache:
            path = None
            for cand in (name, *(name + ext for ext in EXTENSIONS)):
                path = self.resolve(cand)
                if path is not None and Path(path).is_file():
                    break
                path = None
            self._cache[name] = load_embedding(path, name) if path is not None else None
        return self._cache[name]

    def get(self, name: str) -> Embedding:
        found = self.find(name)
        if found is None:
            raise ValueError(f"embedding {name!r} was not found in the embeddings folder"
                             + (f" ({self.where})" if self.where else ""))
        return found

    def files(self) -> list[str]:
        return [e.path for e in self._cache.values() if e is not None]


def lookup_for(paths) -> EmbeddingLookup | None:
    """The lookup through a :class:`nodegen.models.paths.ModelPaths` (None without one)."""
    if paths is None:
        return None
    return EmbeddingLookup(lambda name: paths.resolve("embeddings", name), paths.describe("embeddings"))


def text_fingerprint(*text_inputs: str) -> Callable[[dict, object], object]:
    """A node ``fingerprint`` hook: the embedding files a prompt names (path, size, mtime), so a
    changed or added embedding re-runs the encoding."""
    import re

    word = re.compile(r"(?<!\S)embedding:(\S+)")

    def fingerprint(inputs: dict, env) -> object:
        paths = getattr(env, "paths", None)
        names = sorted({m.group(1) for k in text_inputs if isinstance(inputs.get(k), str)
                        for m in word.finditer(inputs[k])})
        if not names or paths is None:
            return None
        out = []
        for name in names:
            for cand in (name, name.rstrip(","), *(name.rstrip(",") + ext for ext in EXTENSIONS)):
                p = paths.resolve("embeddings", cand)
                if p is not None and Path(p).is_file():
                    st = Path(p).stat()
                    out.append((name, (str(Path(p).resolve()), st.st_size, st.st_mtime_ns)))
                    break
            else:
                out.append((name, None))
        return out

    return fingerprint
