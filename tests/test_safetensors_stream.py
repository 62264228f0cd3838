"""StreamedStateDict reads the same tensors as safetensors' own loader, one at a time."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodegen.models.files import ModelFileError
from nodegen.models.safetensors_stream import StreamedStateDict, open_streamed


def test_streamed_tensors_equal_safetensors(tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {"a.weight": torch.randn(3, 5, generator=g), "b": torch.randn(7, generator=g).half(),
          "c": torch.randn(2, 2, generator=g).bfloat16(), "d": torch.randn(4, generator=g).to(torch.float8_e4m3fn),
          "e": torch.arange(6).reshape(2, 3), "f": torch.tensor([True, False])}
    path = tmp_path / "x.safetensors"
    save_file(sd, str(path), metadata={"k": "v"})
    ref = load_file(str(path))
    s = StreamedStateDict(path)
    assert set(s) == set(ref) and s.metadata == {"k": "v"} and s.shapes()["a.weight"] == (3, 5)
    for k in ref:
        assert s[k].dtype == ref[k].dtype and torch.equal(s[k].view(torch.uint8), ref[k].view(torch.uint8))
    cast = open_streamed(path, torch.float32)
    assert cast["b"].dtype == torch.float32 and torch.equal(cast["b"], ref["b"].float())
    assert cast["e"].dtype == torch.int64
    assert torch.equal(cast.pop("a.weight"), ref["a.weight"]) and "a.weight" not in cast
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ModelFileError, match="truncated"):
        StreamedStateDict(path)["f"]
