"""Issue 18, model files: the malicious-pickle matrix over every loader, broken and lying
safetensors headers (hypothesis), and files that are not regular files. Every case must end in
an error that names the file, never in code running, a hang or a traceback from deep inside."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fuzzing import fuzz_settings


def _loaders():
    from nodegen.models import controlnet, files, loader, lora
    from nodegen.style import vgg
    from nodegen.upscale import model as upscale

    return {
        "load_state_dict": files.load_state_dict,
        "read_shapes": files.read_shapes,
        "open_state_dict": files.open_state_dict,
        "load_checkpoint": loader.load_checkpoint,
        "load_vae": loader.load_vae,
        "read_lora": lora.read_lora,
        "load_controlnet": controlnet.load_controlnet,
        "load_upscale_model": upscale.load_upscale_model,
        "load_vgg19": vgg.load_vgg19,
    }


LOADERS = list(_loaders())
#: What a loader may raise for a bad file (all name the file; checked below).
REFUSALS = (ValueError, FileNotFoundError, OSError, KeyError)


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvilOpen:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious_files(folder: Path, marker: Path) -> list[Path]:
    """Plain pickles, torch zip archives and pickles hidden in a state dict, under each extension."""
    out = []
    payloads = {
        "system": _Evil(str(marker)),
        "open": _EvilOpen(str(marker)),
        "nested": {"state_dict": {"w": torch.zeros(1), "x": _Evil(str(marker))}},
    }
    for name, obj in payloads.items():
        for ext in (".ckpt", ".pt", ".pth", ".bin"):
            raw = folder / f"raw_{name}{ext}"
            raw.write_bytes(pickle.dumps(obj, protocol=2))
            out.append(raw)
        zipped = folder / f"zip_{name}.ckpt"
        torch.save(obj, zipped)
        out.append(zipped)
    # a safetensors extension on a pickle, and a pickle inside a renamed zip member
    fake = folder / "pickle_as.safetensors"
    fake.write_bytes(pickle.dumps(_Evil(str(marker))))
    out.append(fake)
    return out


def test_malicious_pickle_matrix(tmp_path):
    marker = tmp_path / "PWNED"
    files = _malicious_files(tmp_path, marker)
    loaders = _loaders()
    for path in files:
        for name, load in loaders.items():
            with pytest.raises(REFUSALS) as info:
                load(path)
            assert path.name in str(info.value), (name, path.name, info.value)
            assert not marker.exists(), f"{name} ran code from {path.name}"


@pytest.mark.parametrize("loader", LOADERS)
def test_not_regular_files_and_empty_files_are_named(tmp_path, loader):
    load = _loaders()[loader]
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    fifo = tmp_path / "fifo.ckpt"
    os.mkfifo(fifo)
    for path in (empty, folder, fifo, Path("/dev/zero")):
        with pytest.raises(REFUSALS) as info:
            load(path)
        assert str(path.name) in str(info.value) or str(path) in str(info.value), (loader, path, info.value)


# -- safetensors headers -----------------------------------------------------------------------------

DTYPES = ["F32", "F16", "BF16", "I64", "I8", "U8", "BOOL", "F64", "XX", ""]


@st.composite
def safetensors_bytes(draw) -> bytes:
    """A safetensors file whose header may lie: bad offsets, shapes, dtypes, lengths, JSON."""
    n = draw(st.integers(0, 4))
    header: dict = {}
    pos = 0
    for i in range(n):
        shape = draw(st.lists(st.integers(-2, 70000), min_size=0, max_size=4))
        size = draw(st.integers(0, 64))
        start = draw(st.sampled_from([pos, pos + 1, 0, 2 ** 40]))
        header[draw(st.sampled_from([f"t{i}", "model.diffusion_model.x", "lora_unet_a.lora_down.weight", ""]))] = {
            "dtype": draw(st.sampled_from(DTYPES)), "shape": shape,
            "data_offsets": draw(st.sampled_from([[start, start + size], [start + size, start], [start], "x"]))}
        pos += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.sampled_from([{"scaling_factor": "nan"}, {"a": 1}, "x",
                                                       {"scaling_factor": "1e-30"}]))
    text = json.dumps(header).encode()
    text = draw(st.sampled_from([text, text[: len(text) // 2], b"{" * 200, b"[]", b"\xff\xfe"]))
    length = draw(st.sampled_from([len(text), len(text) + 5, 2 ** 62, 0, max(0, len(text) - 3)]))
    body = draw(st.binary(max_size=128))
    return struct.pack("<Q", length) + text + body


@settings(fuzz_settings(40), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=safetensors_bytes(), loader=st.sampled_from(LOADERS))
def test_fuzzed_safetensors_headers_are_refused_naming_the_file(tmp_path, data, loader):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(data)
    try:
        _loaders()[loader](path)
    except REFUSALS as e:
        assert "fuzz.safetensors" in str(e), (loader, e)


def test_zip_bomb_member_in_a_ckpt_is_refused(tmp_path):
    """A .ckpt zip whose data.pkl is not a pickle at all."""
    path = tmp_path / "odd.ckpt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02" + b"X" * 1000)
        z.writestr("archive/version", b"3\n")
    with pytest.raises(REFUSALS) as info:
        _loaders()["load_state_dict"](path)
    assert "odd.ckpt" in str(info.value)
