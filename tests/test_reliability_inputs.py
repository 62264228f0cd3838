"""Issue 18, hangs, bombs and tracebacks: hostile input gives a clear error (exit 2 for a bad
workflow or usage, 1 for a failing node), quickly, without a traceback."""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from nodegen.cli import main

DEV_ZERO = "/dev/zero"


@pytest.fixture(autouse=True)
def _dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("NODEGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NODEGEN_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.chdir(tmp_path)


def _graph(tmp_path, nodes, name="g.json", **extra):
    p = tmp_path / name
    p.write_text(json.dumps({"format": "nodegen-workflow", "version": 1, "nodes": nodes, **extra}))
    return p


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return code, out.out + out.err


# -- tracebacks where an error belongs ---------------------------------------------------------------

@pytest.mark.parametrize("doc", [
    {"format": "nodegen-workflow", "version": 0, "nodes": [{"no_id": 1}]},
    {"format": "nodegen-workflow", "version": 0, "nodes": [5]},
    {"format": "nodegen-workflow", "version": 0, "nodes": {"1": {"inputs": [1, 2]}}},
    {"format": "nodegen-workflow", "version": 0, "nodes": "x"},
    {"format": "nodegen-workflow", "version": 1, "nodes": {}},
])
def test_malformed_and_empty_workflows_exit_2(tmp_path, capsys, doc):
    p = tmp_path / "w.json"
    p.write_text(json.dumps(doc))
    assert _run(capsys, "run", str(p))[0] == 2


def test_deep_nesting_long_names_and_devices_as_the_graph_exit_2(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text('{"format": "nodegen-workflow", "version": 1, "nodes": {}, "x": ' + "[" * 5000 + "]" * 5000 + "}")
    assert _run(capsys, "validate", str(deep))[0] == 2
    assert _run(capsys, "run", str(tmp_path / ("n" * 300 + ".json")))[0] == 2
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for cmd in ("run", "validate", "info", "lock", "import comfy", "export comfy"):
        for graph, what in ((DEV_ZERO, "a device"), (str(fifo), "FIFO"), (str(tmp_path), "a folder")):
            extra = ["-o", str(tmp_path / "o.json")] if cmd.endswith("comfy") else []
            code, text = _run(capsys, *cmd.split(), graph, *extra)
            assert code == 2 and "not a regular file" in text and what in text, (cmd, graph, text)


def test_set_values_deep_huge_or_bad_exit_2(tmp_path, capsys):
    g = _graph(tmp_path, {"1": {"type": "Int", "inputs": {"value": 1}}})
    assert _run(capsys, "run", str(g), "--set", "1.value=" + "9" * 5000)[0] == 2
    assert _run(capsys, "run", str(g), "--set", "1.value=" + "[" * 3000 + "]" * 3000)[0] == 2


def test_bomb_png_as_the_graph_is_read_without_its_pixels(tmp_path, capsys):
    # a 30000x30000 PNG (900 megapixels) that is a few hundred kilobytes: only its text is read
    w = h = 30000
    raw = zlib.compress(b"\0" * ((w + 1) * 2000), 9)  # the first rows; PIL would refuse the size

    def chunk(kind, body):
        return struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body))

    wf = json.dumps({"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "Int", "inputs": {"value": 3}}}}).encode()
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"tEXt", b"nodegen-workflow\0" + wf) + chunk(b"IEND", b""))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(data)
    assert _run(capsys, "validate", str(bomb))[0] == 2  # valid JSON, but no output node
    assert _run(capsys, "import", "comfy", str(bomb), "-o", str(tmp_path / "o.json"))[0] == 2  # already nodegen
    code, text = _run(capsys, "info", str(bomb))
    assert code == 0 and "Int" in text
    code, text = _run(capsys, "run", str(bomb), "--target", "1")
    assert code == 0


def test_bad_config_file_threads_and_values(tmp_path, capsys, monkeypatch):
    g = _graph(tmp_path, {"1": {"type": "Int", "inputs": {"value": 1}}})
    cfg = tmp_path / "config.json"
    for text in ("{not json", '{"models": "abc"}', '{"extra_paths": {"loras": [1, 2]}}', "[1]"):
        cfg.write_text(text)
        monkeypatch.setenv("NODEGEN_CONFIG", str(cfg))
        code, out = _run(capsys, "validate", str(g))
        assert code == 2 and "config file" in out
    monkeypatch.setenv("NODEGEN_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.setenv("NODEGEN_THREADS", "abc")
    assert _run(capsys, "run", str(g))[0] == 2
    monkeypatch.delenv("NODEGEN_THREADS")
    code, out = _run(capsys, "run", str(g), "--threads", "100000")
    assert code == 2 and "between 1 and" in out


# -- hangs and bombs ----------------------------------------------------------------------------------

def test_int_power_is_bounded(tmp_path, capsys):
    g = _graph(tmp_path, {"1": {"type": "IntMath", "inputs": {"a": 3, "op": "power", "b": 10 ** 9}}})
    code, out = _run(capsys, "run", str(g), "--target", "1")
    assert code == 1 and "bits" in out


def test_linked_values_are_range_checked_before_the_node_runs(tmp_path, capsys):
    g = _graph(tmp_path, {
        "1": {"type": "Int", "inputs": {"value": 100000}},
        "2": {"type": "EmptyLatentImage", "inputs": {"width": {"from": ["1", "value"]}, "height": 64,
                                                    "batch_size": 1}}})
    code, out = _run(capsys, "run", str(g), "--target", "2")
    assert code == 1 and "above the maximum" in out and "'width'" in out


def test_memory_estimate_refuses_before_allocating(tmp_path, capsys, monkeypatch):
    g = _graph(tmp_path, {"1": {"type": "EmptyLatentImage",
                                "inputs": {"width": 16384, "height": 16384, "batch_size": 16}}})
    monkeypatch.setenv("NODEGEN_MAX_MEMORY", str(8 << 30))
    code, out = _run(capsys, "run", str(g), "--target", "1")
    assert code == 1 and "would need about" in out and "8.6 GB" in out


def test_prompt_length_is_capped(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NODEGEN_MAX_TEXT", "1000")
    g = _graph(tmp_path, {"1": {"type": "StringConcat", "inputs": {"a": "x" * 2000, "b": ""}}})
    code, out = _run(capsys, "run", str(g), "--target", "1")
    assert code == 1 and "2000 characters" in out


def test_decoded_image_pixels_are_capped(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NODEGEN_MAX_IMAGE_PIXELS", "1000")
    (tmp_path / "input").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), "uint8")).save(tmp_path / "input" / "big.png")
    g = _graph(tmp_path, {"1": {"type": "LoadImage", "inputs": {"image": "big.png"}}})
    code, out = _run(capsys, "run", str(g), "--target", "1")
    assert code == 1 and "megapixels" in out


def test_devices_fifos_and_folders_as_model_or_image_are_named(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "folder.safetensors").mkdir()
    g = _graph(tmp_path, {
        "1": {"type": "LoraLoader", "inputs": {"lora_name": DEV_ZERO, "strength_model": 0.0,
                                               "strength_clip": 0.0}},
        "2": {"type": "LoadImage", "inputs": {"image": "pipe.png"}},
        "3": {"type": "CheckpointLoader", "inputs": {"ckpt_name": str(tmp_path / "folder.safetensors")}}})
    code, out = _run(capsys, "validate", str(g))
    assert code == 2 and out.count("not a regular file") >= 3, out
    assert "/dev/zero" in out and "pipe.png" in out and "a folder" in out
    code, out = _run(capsys, "lock", str(g))
    assert code == 2 and "not a regular file" in out


def test_symlink_loops_and_hash_without_size(tmp_path, capsys, monkeypatch):
    from nodegen.models.paths import ModelPaths
    from nodegen.sharing import models as sm

    loras = tmp_path / "m" / "loras"
    loras.mkdir(parents=True)
    (loras / "a.safetensors").write_bytes(b"x" * 10)
    os.symlink(loras, loras / "loop")
    os.symlink(tmp_path / "m", loras / "up")
    os.symlink(loras / "self", loras / "self")
    assert [n for n in ModelPaths([tmp_path / "m"], use_env=False, use_config=False).list("loras")
            if not n.startswith("nodegen-demo")] == ["a.safetensors"]
    read = []
    monkeypatch.setattr(sm, "sha256_file", lambda p, *a, **k: read.append(p) or "0" * 64)
    assert sm.find_by_hash(ModelPaths([tmp_path / "m"], use_env=False, use_config=False), "f" * 64, None) is None
    assert read == []  # no size recorded: no file is read
    assert _run(capsys, "nodes", "--models", str(tmp_path / "m"))[0] == 0


def test_zero_byte_checkpoint_and_bad_vae_scale_are_named(tmp_path):
    from nodegen.models.files import ModelFileError, check_scaling_factor, load_state_dict

    empty = tmp_path / "e.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        load_state_dict(empty)
    for bad in (float("nan"), 1e-30, float("inf")):
        with pytest.raises(ModelFileError, match="scaling_factor"):
            check_scaling_factor(bad, "vae.safetensors")
    assert check_scaling_factor(0.18215, "v") == 0.18215


def test_titles_are_truncated_in_messages(tmp_path, capsys):
    g = _graph(tmp_path, {"1": {"type": "Nope", "title": "T" * 1_000_000, "inputs": {}}})
    code, out = _run(capsys, "validate", str(g))
    assert code == 2 and len(out) < 5000 and "1000000 characters" in out


# -- plugins -----------------------------------------------------------------------------------------

def test_plugins_that_exit_hang_or_fail_are_named(tmp_path, monkeypatch):
    from nodegen.kernel.registry import NodeRegistry

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "exits.py").write_text("import sys\nsys.exit(3)\n")
    # Hangs at import until the test lets it go (sleeping, so that the abandoned import thread
    # neither holds the GIL nor outlives the test: a spinning one slowed every later test).
    release = tmp_path / "release"
    (folder / "loops.py").write_text(f"import os, time\nwhile not os.path.exists({str(release)!r}):\n"
                                     f"    time.sleep(0.01)\n")
    (folder / "fails.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.setenv("NODEGEN_PLUGIN_TIMEOUT", "0.5")
    reg = NodeRegistry()
    reg.load_folder(folder)
    text = "\n".join(str(e) for e in reg.errors)
    assert "exits.py" in text and "sys.exit(3)" in text
    assert "loops.py" in text and "did not finish within 0.5 s" in text
    assert "fails.py" in text and "needs libfoo" in text
    release.touch()
    for t in threading.enumerate():
        if t.name == "nodegen-plugin-import":
            t.join(10)
            assert not t.is_alive()


def test_a_failed_plugin_is_named_in_validate(tmp_path, capsys, monkeypatch):
    from nodegen.kernel import registry as regmod

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "mynodes.py").write_text("raise ImportError('needs libfoo')\n")
    reg = regmod.NodeRegistry().discover(plugins=False, user_dirs=[folder])
    monkeypatch.setattr(regmod, "default_registry", lambda: reg)
    import nodegen.runtime.engine as eng

    monkeypatch.setattr(eng, "default_registry", lambda: reg)
    g = _graph(tmp_path, {"1": {"type": "MyNode", "inputs": {}}})
    code, out = _run(capsys, "validate", str(g))
    assert code == 2 and "mynodes.py" in out and "needs libfoo" in out


# -- node failures: one paragraph, traceback in a log --------------------------------------------------

def test_node_failure_is_one_paragraph_with_the_traceback_in_a_log(tmp_path, capsys):
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "bad.png").write_text("not a png")
    g = _graph(tmp_path, {"1": {"type": "LoadImage", "inputs": {"image": "bad.png"}}})
    code, out = _run(capsys, "run", str(g), "--target", "1")
    assert code == 1 and "node 1" in out and "bad.png" in out and "what to do" in out
    logs = list((tmp_path / "logs").iterdir())
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()
    main(["run", str(g), "--target", "1", "--debug"])
    assert "Traceback" in capsys.readouterr().err


# -- LoadImage path policy ---------------------------------------------------------------------------

def test_load_image_path_policy(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), "uint8")).save(outside / "secret.png")
    wfdir = tmp_path / "wf"
    (wfdir / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), "uint8")).save(wfdir / "sub" / "ok.png")

    def check(name, *flags):
        g = _graph(wfdir, {"1": {"type": "LoadImage", "inputs": {"image": name}}})
        return _run(capsys, "validate", str(g), "--target", "1", *flags)

    assert check("sub/ok.png")[0] == 0                        # the workflow's folder
    assert check(str(wfdir / "sub" / "ok.png"))[0] == 0         # absolute, but inside it
    exists = check(str(outside / "secret.png"))
    missing = check(str(outside / "nothere.png"))
    assert exists[0] == missing[0] == 2
    assert exists[1].replace("secret", "X") == missing[1].replace("nothere", "X")  # reveals nothing
    assert "--allow-any-path" in exists[1]
    assert check("../outside/secret.png")[0] == 2
    os.symlink(outside / "secret.png", wfdir / "link.png")
    assert check("link.png")[0] == 2                           # a symlink leading out
    assert check(str(outside / "secret.png"), "--allow-any-path")[0] == 0


def test_a_plain_value_through_a_reroute_is_refused_before_the_node_runs(tmp_path, capsys):
    """Found by fuzzing: Boolean -> Reroute -> ImageThreshold gave AttributeError inside the node."""
    g = _graph(tmp_path, {
        "1": {"type": "Boolean", "inputs": {"value": True}},
        "2": {"type": "Reroute", "inputs": {"value": {"from": ["1", "value"]}}},
        "3": {"type": "ImageInvert", "inputs": {"image": {"from": ["2", "value"]}}}})
    code, out = _run(capsys, "run", str(g), "--target", "3")
    assert code == 1 and "input 'image'" in out and "got bool" in out


def test_long_titles_are_shortened_in_failure_reports(tmp_path, capsys):
    g = _graph(tmp_path, {"1": {"type": "IntMath", "title": "T" * 100000,
                                "inputs": {"a": 1, "op": "divide", "b": 0}}})
    code, out = _run(capsys, "run", str(g), "--target", "1")
    assert code == 1 and "100000 characters" in out and len(out) < 5000


def test_memory_estimate_covers_scaling_an_input(tmp_path, capsys, monkeypatch):
    (tmp_path / "input").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), "uint8")).save(tmp_path / "input" / "a.png")
    g = _graph(tmp_path, {"1": {"type": "LoadImage", "inputs": {"image": "a.png"}},
                          "2": {"type": "ImageScaleBy", "inputs": {"image": {"from": ["1", "image"]},
                                                                   "scale_by": 8.0}},
                          "3": {"type": "EmptyLatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 1}},
                          "4": {"type": "RepeatLatentBatch", "inputs": {"samples": {"from": ["3", "latent"]},
                                                                        "amount": 64}}})
    monkeypatch.setenv("NODEGEN_MAX_MEMORY", str(40 << 20))  # 64*64*64 px * 192 B = 50 MB
    code, out = _run(capsys, "run", str(g), "--target", "2")
    assert code == 1 and "scaling by 8.0 would need about 50.3 MB" in out, out
    code, out = _run(capsys, "run", str(g), "--target", "4")
    assert code == 1 and "repeating 64 times" in out, out
