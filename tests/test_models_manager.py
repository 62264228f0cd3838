"""ModelManager: LRU offload under a byte budget, dtype policy, file cache keyed by size+mtime."""

from __future__ import annotations

import os

import pytest
import torch

from nodegen.models.manager import ModelManager, file_key, module_bytes
from tests.support.fixtures import fixture

torch.set_num_threads(1)


class SimulatedGPU(ModelManager):
    """Placement bookkeeping of a two-device machine, simulated on the CPU: the "cuda" location
    of a module is recorded instead of moving its tensors (the policy is what is tested)."""

    def __init__(self, **kw):
        super().__init__(device="cpu", **kw)
        self.where: dict[int, str] = {}

    def _device_of(self, module):
        return torch.device(self.where.get(id(module), "cpu"))

    def _move(self, module, device, dtype):
        src = self._device_of(module)
        if src.type != device.type:
            self.where[id(module)] = device.type
            self.moves.append((module.name, src.type, device.type))


def _mod(name: str, n: int) -> torch.nn.Module:
    m = torch.nn.Linear(n, 1, bias=False)  # n float32 weights = 4n bytes
    m.name = name
    return m


def test_lru_offload_under_budget():
    a, b, c = _mod("a", 100), _mod("b", 100), _mod("c", 100)
    assert module_bytes(a) == 400
    mgr = SimulatedGPU(budgets={"cuda": 900})  # room for two
    for m in (a, b):
        with mgr.use(m, "cuda"):
            pass
    assert mgr.resident("cuda") == [a, b] and mgr.moves == [("a", "cpu", "cuda"), ("b", "cpu", "cuda")]
    with mgr.use(c, "cuda"):
        pass  # a is the least recently used: offloaded to the host
    assert mgr.moves[-2:] == [("a", "cuda", "cpu"), ("c", "cpu", "cuda")]
    assert set(map(id, mgr.resident("cuda"))) == {id(b), id(c)}
    with mgr.use(b, "cuda"):  # already there: no move, but now most recent
        pass
    assert len(mgr.moves) == 4
    with mgr.use(a, "cuda"):
        pass  # now c is the least recently used
    assert mgr.moves[-2:] == [("c", "cuda", "cpu"), ("a", "cpu", "cuda")]


def test_models_in_use_are_never_offloaded():
    a, b, c = _mod("a", 100), _mod("b", 100), _mod("c", 100)
    mgr = SimulatedGPU(budgets={"cuda": 500})  # room for one
    with mgr.use(a, "cuda"), mgr.use(b, "cuda"):
        # a is in use: the budget is exceeded rather than pulling a model out from under a user
        assert {id(m) for m in mgr.resident("cuda")} == {id(a), id(b)}
        with mgr.use(c, "cuda"):
            assert ("a", "cuda", "cpu") not in mgr.moves and ("b", "cuda", "cpu") not in mgr.moves
    with mgr.use(c, "cuda"):
        pass
    with mgr.use(a, "cuda"):
        pass
    assert ("b", "cuda", "cpu") in mgr.moves


def test_dead_modules_are_forgotten():
    mgr = SimulatedGPU(budgets={"cuda": 10_000})
    m = _mod("x", 10)
    with mgr.use(m, "cuda"):
        pass
    assert len(mgr.resident("cuda")) == 1
    del m
    import gc

    gc.collect()
    assert mgr.resident("cuda") == []


def test_cpu_dtype_policy():
    mgr = ModelManager(device="cpu")
    assert mgr.dtype_for("cpu") == torch.float32
    assert mgr.dtype_for("cuda") == torch.float16
    m = torch.nn.Linear(4, 4).half()
    with mgr.use(m) as used:
        assert used.weight.dtype == torch.float32 and used.weight.device.type == "cpu"


def test_checkpoint_cache_keyed_by_path_size_mtime(tmp_path_factory, tmp_path):
    ns = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    path = tmp_path / "m.safetensors"
    path.write_bytes(ns.single_file.read_bytes())
    mgr = ModelManager(device="cpu")
    first = mgr.load_checkpoint(path)
    assert mgr.load_checkpoint(path) is first
    assert mgr.load_checkpoint(path, prediction="v_prediction") is not first  # other options
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert file_key(path) != (str(path.resolve()), st.st_size, st.st_mtime_ns)
    again = mgr.load_checkpoint(path)
    assert again is not first and again[0].unet is not first[0].unet
    assert first[0].manager is mgr and again[1].manager is mgr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_gpu_offload():
    a, b = torch.nn.Linear(256, 256), torch.nn.Linear(256, 256)
    size = module_bytes(a.half())
    mgr = ModelManager(device="cuda", budgets={"cuda": int(size * 1.5)})
    with mgr.use(a) as ga:
        assert ga.weight.device.type == "cuda" and ga.weight.dtype == torch.float16
    with mgr.use(b):
        pass
    assert a.weight.device.type == "cpu" and b.weight.device.type == "cuda"
