"""SHA-256 of model files: chunked, cached by path + size + mtime, cancellable, usable off-thread."""

from __future__ import annotations

import hashlib
import json
import os
import threading

import pytest

from nodegen.sharing import hashing


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NODEGEN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / hashing.CACHE_NAME


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


def test_hash_is_sha256_chunked_with_progress(tmp_path, cache_env, monkeypatch):
    monkeypatch.setattr(hashing, "CHUNK", 1000)
    data = os.urandom(4500)
    f = _file(tmp_path / "m.safetensors", data)
    seen = []
    digest = hashing.sha256_file(f, progress=lambda done, total: seen.append((done, total)))
    assert digest == hashlib.sha256(data).hexdigest()
    assert seen == [(1000, 4500), (2000, 4500), (3000, 4500), (4000, 4500), (4500, 4500)]
    entries = json.loads(cache_env.read_text())["entries"]
    assert entries[str(f.resolve())]["sha256"] == digest and entries[str(f.resolve())]["size"] == 4500


def test_cache_is_used_until_size_or_mtime_change(tmp_path, cache_env):
    f = _file(tmp_path / "m.bin", b"a" * 100)
    first = hashing.sha256_file(f)
    st = f.stat()
    f.write_bytes(b"b" * 100)  # same size; put the old mtime back: the cache answers (not re-read)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert hashing.cached_sha256(f) == first
    assert hashing.sha256_file(f) == first
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert hashing.cached_sha256(f) is None
    assert hashing.sha256_file(f) == hashlib.sha256(b"b" * 100).hexdigest()


def test_cache_survives_processes_and_merges(tmp_path, cache_env):
    a, b = _file(tmp_path / "a.bin", b"aa"), _file(tmp_path / "b.bin", b"bb")
    hashing.sha256_file(a, cache=hashing.HashCache(cache_env))
    hashing.sha256_file(b, cache=hashing.HashCache(cache_env))  # a second "process"
    fresh = hashing.HashCache(cache_env)
    assert fresh.get(a) == hashlib.sha256(b"aa").hexdigest()
    assert fresh.get(b) == hashlib.sha256(b"bb").hexdigest()
    assert not [p for p in cache_env.parent.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_cache_file_is_ignored(tmp_path, cache_env):
    cache_env.parent.mkdir(parents=True)
    cache_env.write_text("{broken")
    f = _file(tmp_path / "m.bin", b"x")
    assert hashing.sha256_file(f) == hashlib.sha256(b"x").hexdigest()
    assert json.loads(cache_env.read_text())["entries"]


def test_cancel_and_background_worker(tmp_path, cache_env, monkeypatch):
    monkeypatch.setattr(hashing, "CHUNK", 10)
    f = _file(tmp_path / "m.bin", b"z" * 100)
    with pytest.raises(hashing.HashCancelled):
        hashing.sha256_file(f, cancel=lambda: True)
    assert hashing.cached_sha256(f) is None  # nothing cached from a cancelled run
    threads = []
    fut = hashing.submit(f, progress=lambda d, t: threads.append(threading.current_thread().name))
    assert fut.result(timeout=10) == hashlib.sha256(b"z" * 100).hexdigest()
    assert threads and all(name.startswith("nodegen-hash") for name in threads)


def test_model_folder_hash_is_a_manifest(tmp_path, cache_env):
    d = tmp_path / "diffusers-model"
    (d / "unet").mkdir(parents=True)
    _file(d / "model_index.json", b"{}")
    _file(d / "unet" / "w.safetensors", b"weights")
    manifest = (f"{hashlib.sha256(b'{}').hexdigest()}  model_index.json\n"
                f"{hashlib.sha256(b'weights').hexdigest()}  unet/w.safetensors\n")
    assert hashing.sha256_file(d) == hashlib.sha256(manifest.encode()).hexdigest()
    assert hashing.file_size(d) == 9


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("NODEGEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert hashing.cache_dir() == tmp_path / "nodegen"


def test_prefetch_hashes_in_the_background_and_sha256_file_waits_for_it(tmp_path, monkeypatch):
    import hashlib
    from concurrent.futures import Future

    from nodegen.sharing import hashing

    monkeypatch.setenv("NODEGEN_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"weights" * 1000)
    fut = hashing.prefetch(f)
    assert fut is not None
    assert fut.result(timeout=30) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert hashing.cached_sha256(f) == fut.result()
    assert hashing.prefetch(f) is None  # cached: nothing to do

    g = tmp_path / "other.safetensors"
    g.write_bytes(b"other")
    pending: Future = Future()
    pending.set_result("ab" * 32)
    monkeypatch.setitem(hashing._inflight, hashing._stat_key(g), pending)
    assert hashing.sha256_file(g) == "ab" * 32  # the in-flight result, not a second read
