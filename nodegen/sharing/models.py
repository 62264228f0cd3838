"""The workflow's ``models`` section: which model files a workflow uses, by name, size and SHA-256.

* :func:`model_inputs` finds the inputs that name model files (file inputs whose kind is a model
  folder kind; for node types not installed, ComfyUI's well-known input names);
* :func:`lock` fills ``doc["models"]`` with ``{name, kind, size, sha256}`` per file used;
* :func:`resolve_models` (called by ``Engine.prepare``) finds a file that is missing by name by
  its recorded hash anywhere in the model folders and rewrites the input to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodegen.models.paths import KINDS, MODEL_EXTENSIONS, walk
from nodegen.sharing.hashing import cached_sha256, file_size, sha256_file

#: For node types that are not installed (placeholders, plugins missing): well-known input names.
KNOWN_MODEL_INPUTS = {"ckpt_name": "checkpoints", "vae_name": "vae", "lora_name": "loras",
                      "control_net_name": "controlnet", "unet_name": "checkpoints"}


@dataclass(frozen=True)
class ModelUse:
    node_id: str
    input: str
    kind: str
    name: str
    title: str


def model_inputs(doc: dict, registry: Any) -> Iterator[ModelUse]:
    for nid, n in doc.get("nodes", {}).items():
        nd = registry.get(n.get("type")) if registry is not None else None
        title = n.get("title") or (nd.title if nd else str(n.get("type")))
        for name, value in (n.get("inputs") or {}).items():
            if not isinstance(value, str) or not value:
                continue
            if nd is not None:
                spec = nd.input(name)
                kind = spec.file_kind if spec is not None and spec.widget == "file" else None
            else:
                kind = KNOWN_MODEL_INPUTS.get(name)
                if n.get("type") in ("UpscaleModelLoader",) and name == "model_name":
                    kind = "upscale_models"
            if kind in KINDS:
                yield ModelUse(str(nid), name, kind, value, title)


def human_size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _entry_for(doc: dict, kind: str, name: str) -> dict | None:
    entries = [e for e in doc.get("models") or [] if isinstance(e, dict) and e.get("name") == name]
    return next((e for e in entries if e.get("kind") in (kind, None)), entries[0] if entries else None)


@dataclass
class LockReport:
    entries: list[dict]
    missing: list[ModelUse]
    hashed: list[str]


def lock(doc: dict, registry: Any, env: Any, progress: Callable[[str, int, int], None] | None = None,
         cancel: Callable[[], bool] | None = None) -> LockReport:
    """Record name, kind, size and sha256 of every model file ``doc`` uses (in place). A file not
    found here keeps the entry the document already had for it (or gets a name-only entry)."""
    entries: list[dict] = []
    seen: set[tuple[str, str]] = set()
    missing: list[ModelUse] = []
    hashed: list[str] = []
    for use in model_inputs(doc, registry):
        if (use.kind, use.name) in seen:
            continue
        seen.add((use.kind, use.name))
        path = env.resolve_file(use.kind, use.name) if env is not None else None
        if path is None:
            missing.append(use)
            old = _entry_for(doc, use.kind, use.name)
            entries.append(dict(old) if old else {"name": use.name, "kind": use.kind})
            continue
        cb = (lambda d, t, _n=use.name: progress(_n, d, t)) if progress else None
        digest = sha256_file(path, cb, cancel)
        hashed.append(use.name)
        entries.append({"name": use.name, "kind": use.kind, "size": file_size(path), "sha256": digest})
    doc["models"] = entries
    return LockReport(entries, missing, hashed)


def _candidates(paths: Any, kind: str) -> Iterator[tuple[str, Path]]:
    for folder in paths.folders(kind):
        for dirpath, dirnames, filenames in walk(folder):
            if "model_index.json" in filenames and Path(dirpath) != folder:
                yield Path(dirpath).relative_to(folder).as_posix(), Path(dirpath)
                dirnames[:] = []
                continue
            for fn in sorted(filenames):
                if fn.lower().endswith(MODEL_EXTENSIONS):
                    p = Path(dirpath) / fn
                    yield p.relative_to(folder).as_posix(), p


def find_by_hash(paths: Any, sha256: str, size: int | None = None, kind: str | None = None,
                 cancel: Callable[[], bool] | None = None) -> tuple[str, str, Path] | None:
    """``(kind, name, path)`` of a model file with this hash, looking in ``kind``'s folders first,
    then every other model folder. Only files of the recorded size are read (cached hashes first)."""
    order = ([kind] if kind in KINDS else []) + [k for k in KINDS if k != kind]
    seen: set[Path] = set()
    pending: list[tuple[str, str, Path]] = []
    for k in order:
        for name, p in _candidates(paths, k):
            rp = p.resolve()
            if rp in seen:
                continue
            seen.add(rp)
            try:
                if size is not None and file_size(p) != size:
                    continue
            except OSError:
                continue
            if cached_sha256(p) == sha256:
                return k, name, p
            if size is not None:  # without a recorded size, only cached hashes are compared
                pending.append((k, name, p))
    for k, name, p in pending:
        try:
            if sha256_file(p, cancel=cancel) == sha256:
                return k, name, p
        except (OSError, ValueError):
            continue
    return None


@dataclass(frozen=True)
class Rewrite:
    use: ModelUse
    new_name: str
    path: Path


def resolve_models(doc: dict, registry: Any, env: Any) -> tuple[list[Rewrite], dict]:
    """Find model files missing by name by their recorded hash; rewrite the inputs (in place).
    Returns the rewrites and ``{(kind, name): entry}`` of the recorded models still missing."""
    rewrites: list[Rewrite] = []
    still_missing: dict[tuple[str, str], dict] = {}
    if not doc.get("models") or env is None:
        return rewrites, still_missing
    found: dict[tuple[str, str], tuple[str, Path] | None] = {}
    for use in list(model_inputs(doc, registry)):
        try:
            if env.resolve_file(use.kind, use.name) is not None:
                continue
        except ValueError:  # there but not a regular file: validation reports it
            continue
        entry = _entry_for(doc, use.kind, use.name)
        if not entry or not entry.get("sha256"):
            continue
        key = (use.kind, use.name)
        if key not in found:
            hit = find_by_hash(env.paths, entry["sha256"], entry.get("size"), use.kind)
            if hit is None:
                found[key] = None
            else:
                k, name, path = hit
                found[key] = (name if k == use.kind else str(path.resolve()), path)
        if found[key] is None:
            still_missing[key] = entry
            continue
        new_name, path = found[key]
        doc["nodes"][use.node_id]["inputs"][use.input] = new_name
        rewrites.append(Rewrite(use, new_name, path))
    for rw in rewrites:  # the models section follows the rewritten names
        entry = _entry_for(doc, rw.use.kind, rw.use.name)
        if entry is not None:
            entry.setdefault("original_name", entry["name"])
            entry["name"] = rw.new_name
    return rewrites, still_missing


def describe_missing(entry: dict) -> str:
    """``sha256 abc..., 2.1 GB`` for an error message."""
    parts = []
    if entry.get("sha256"):
        parts.append(f"sha256 {entry['sha256']}")
    if entry.get("size") is not None:
        size = entry["size"]
        parts.append(f"{size} bytes" if size < 1000 else f"{human_size(size)} ({size} bytes)")
    return ", ".join(parts)
