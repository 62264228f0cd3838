"""Reading safetensors tensors with pread (no memory map) gives exactly what safetensors gives."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodegen.models.files import LazyStateDict, ModelFileError, open_state_dict


def test_every_dtype_and_shape_reads_back_exactly(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 5, generator=g), "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(2, 2, 2, generator=g).bfloat16(), "f64": torch.randn(4, generator=g).double(),
        "i64": torch.arange(6).reshape(2, 3), "i8": torch.tensor([-3, 4], dtype=torch.int8),
        "u8": torch.tensor([1, 255], dtype=torch.uint8), "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4),
    }
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path), metadata={"scaling_factor": "0.13025"})
    ref = load_file(str(path))
    lazy = LazyStateDict(path)
    assert set(lazy) == set(ref) and lazy.shapes() == {k: tuple(v.shape) for k, v in ref.items()}
    for k, v in ref.items():
        got = lazy[k]
        assert got.dtype == v.dtype and got.shape == v.shape and torch.equal(got, v), k
        assert got.data_ptr() % 64 == 0 or got.numel() == 0
    cast = open_state_dict(path, torch.float32)
    assert cast["f16"].dtype == torch.float32 and torch.equal(cast["f16"], ref["f16"].float())
    assert cast["i64"].dtype == torch.int64
    assert torch.equal(cast.pop("bf16"), ref["bf16"].float()) and "bf16" not in cast


def test_a_damaged_file_names_itself(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ModelFileError, match="bad.safetensors"):
        LazyStateDict(bad)
    path = tmp_path / "short.safetensors"
    save_file({"w": torch.ones(1000)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="ends inside tensor 'w'"):
        LazyStateDict(path)["w"]
