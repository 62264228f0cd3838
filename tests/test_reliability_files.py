"""Issue 18, data loss: outputs are written whole or not at all, never over another file, and a
workflow file is never rewritten from a lossy read."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from nodegen.cli import main
from nodegen.formats import png as pngmod
from nodegen.formats.png_save import check_target, clean_name, next_counter, save_png_exclusive
from nodegen.kernel.atomic import atomic_write_bytes, clean_stale_temps


@pytest.fixture(autouse=True)
def _dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("NODEGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NODEGEN_LOG_DIR", str(tmp_path / "logs"))


def _img(w=8, h=6):
    return Image.fromarray((np.arange(w * h * 3) % 251).astype("uint8").reshape(h, w, 3))


def _graph(tmp_path, nodes, name="g.json"):
    p = tmp_path / name
    p.write_text(json.dumps({"format": "nodegen-workflow", "version": 1, "nodes": nodes}))
    return p


def _save_graph(tmp_path, prefix="cli"):
    _img().save(tmp_path / "in.png")
    return _graph(tmp_path, {
        "1": {"type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"type": "SaveImage", "inputs": {"images": {"from": ["1", "image"]}, "filename_prefix": prefix}}})


# -- atomic writes ---------------------------------------------------------------------------------

def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "w.json"
    target.write_text("old")

    def full(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.json"]


def test_stale_temp_of_a_killed_writer_is_removed_next_time(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".w.json.{dead}.abc123_x.tmp"
    stale.write_bytes(b"x" * 100)
    mine = tmp_path / f".w.json.{os.getpid()}.zzz.tmp"
    mine.write_bytes(b"in progress")
    atomic_write_bytes(tmp_path / "w.json", b"{}")
    assert not stale.exists() and mine.exists()
    assert clean_stale_temps(tmp_path) == []


# -- PNG saving --------------------------------------------------------------------------------------

def test_save_never_overwrites_and_ignores_non_ascii_digits(tmp_path):
    (tmp_path / "p_\u00b2.png").write_bytes(b"stray")          # superscript two: not a counter
    (tmp_path / "p_00007.png").write_bytes(b"x")
    assert next_counter(tmp_path, "p") == 8
    a = save_png_exclusive(_img(), tmp_path, "p")
    b = save_png_exclusive(_img(), tmp_path, "p")
    assert (a.name, b.name) == ("p_00008.png", "p_00009.png")
    assert Image.open(b).size == (8, 6)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_save_failure_removes_the_temp_file_and_creates_no_png(tmp_path):
    class Broken:
        def save(self, f, **kw):
            f.write(b"\x89PNG half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_png_exclusive(Broken(), tmp_path, "p")
    assert list(tmp_path.iterdir()) == []


def test_output_names_are_cleaned():
    assert clean_name("a\nb\u202ec\x00d") == "a_b_c_d"


@pytest.mark.parametrize("prefix,needle", [
    ("x" * 300, "at most"), ("../up", "outside"), ("/abs", "relative"), ("", "empty"),
])
def test_bad_prefixes_are_refused_at_planning(tmp_path, prefix, needle):
    assert needle in check_target(tmp_path, prefix)


def test_out_pointing_at_a_file_or_read_only_folder_exits_2_before_work(tmp_path, capsys, monkeypatch):
    g = _save_graph(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["run", str(g), "--out", str(afile)]) == 2
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    # (tests may run as root, where permissions are not enforced: the check itself is what is tested)
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(ro.resolve()) else real_access(p, mode))
    assert main(["run", str(g), "--out", str(ro)]) == 2
    assert "not writable" in capsys.readouterr().err
    assert list(ro.iterdir()) == []


def test_long_or_nul_prefix_exits_2_at_planning(tmp_path, capsys):
    g = _save_graph(tmp_path, prefix="y" * 400)
    assert main(["run", str(g), "--out", str(tmp_path / "o")]) == 2
    assert "bad_target" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_failed_save_keeps_the_image_and_says_where(tmp_path, capsys, monkeypatch):
    import nodegen.formats.png_save as ps

    real = ps.save_png_exclusive
    calls = []

    def flaky(img, folder, prefix, info=None, digits=5):
        calls.append(folder)
        if len(calls) == 1:
            raise OSError(28, "No space left on device", str(folder))
        return real(img, folder, prefix, info, digits)

    monkeypatch.setattr(ps, "save_png_exclusive", flaky)
    g = _save_graph(tmp_path)
    assert main(["run", str(g), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "the image was kept as" in err
    kept = re.search(r"the image was kept as (\S+\.png)", err).group(1)
    assert Image.open(kept).size == (8, 6)
    os.unlink(kept)


def test_workflow_over_pils_text_limit_reopens(tmp_path):
    from PIL import PngImagePlugin

    big = "z" * (PngImagePlugin.MAX_TEXT_CHUNK + 1000)
    wf = {"format": "nodegen-workflow", "version": 1, "nodes": {}, "metadata": {"description": big}}
    info = pngmod.pnginfo(wf, {"node_id": "1"})
    path = save_png_exclusive(_img(), tmp_path, "big", info)
    assert pngmod.read_workflow(path)["metadata"]["description"] == big


def test_png_text_reader_bounds_decompression(tmp_path):
    from nodegen.formats.png_chunks import PngChunkError, text_chunks

    body = b"k\x00\x00" + zlib.compress(b"a" * 5000)
    import struct

    chunk = struct.pack(">I4s", len(body), b"zTXt") + body + b"\0\0\0\0"
    data = b"\x89PNG\r\n\x1a\n" + chunk
    assert text_chunks(data)["k"] == "a" * 5000
    with pytest.raises(PngChunkError):
        text_chunks(data, limit=100)


# -- workflows read faithfully -----------------------------------------------------------------------

def test_duplicate_node_ids_are_an_error_and_lock_keeps_the_file(tmp_path, capsys):
    text = ('{"format": "nodegen-workflow", "version": 1, "nodes": {'
            '"1": {"type": "Int", "inputs": {"value": 1}}, "1": {"type": "Int", "inputs": {"value": 2}}}}')
    p = tmp_path / "dup.json"
    p.write_text(text)
    assert main(["validate", str(p)]) == 2
    assert "'1' appears twice" in capsys.readouterr().err
    assert main(["lock", str(p)]) == 2
    assert p.read_text() == text


def test_lone_surrogate_is_refused_when_read_and_through_set(tmp_path, capsys):
    p = tmp_path / "s.json"
    p.write_text('{"format": "nodegen-workflow", "version": 1, "nodes": {"1": {"type": "String", '
                 '"inputs": {"value": "\\ud800"}}}}')
    for cmd in (["validate", str(p)], ["lock", str(p)], ["export", "comfy", str(p), "-o", str(tmp_path / "o.json")]):
        assert main(cmd) == 2
    assert "lone surrogate" in capsys.readouterr().err
    g = _save_graph(tmp_path)
    assert main(["run", str(g), "--set", "2.filename_prefix=a\udcff"]) == 2
    assert "lone surrogate" in capsys.readouterr().err


def test_disk_full_during_lock_and_import_is_an_error_and_keeps_the_file(tmp_path, capsys, monkeypatch):
    p = _graph(tmp_path, {"1": {"type": "Int", "inputs": {"value": 1}}})
    before = p.read_text()
    comfy = tmp_path / "c.json"
    comfy.write_text(json.dumps({"1": {"class_type": "EmptyLatentImage",
                                       "inputs": {"width": 64, "height": 64, "batch_size": 1}}}))

    def full(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(["lock", str(p)]) == 2
    assert main(["import", "comfy", str(comfy), "-o", str(tmp_path / "i.json")]) == 2
    assert "No space left" in capsys.readouterr().err
    assert p.read_text() == before and not (tmp_path / "i.json").exists()
    assert not [x for x in tmp_path.iterdir() if x.name.endswith(".tmp")]


def test_saved_names_have_no_newlines_or_bidi_overrides(tmp_path, capsys):
    g = _save_graph(tmp_path, prefix="evil\nname\u202egnp.exe")
    assert main(["run", str(g), "--out", str(tmp_path / "o")]) == 0
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["evil_name_gnp.exe_00001.png"]
