"""SaveAnimatedWEBP and SaveAnimatedPNG: one file per batch with every frame, the frame duration
from fps, lossless and lossy WEBP, the next free number (never an overwrite), the workflow and
the values used embedded and read back, the file listed as the run's output, ComfyUI workflows
that end in them imported in both formats and run, ComfyUI's own WEBPs opened, bad input refused
naming the node and the input. Tiny frames, no model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from nodegen.formats import comfy, is_native, open_any, png, webp
from nodegen.runtime.engine import Engine
from tests.support.comfy_ui import ui_from_api

W, H = 24, 16


def _engine(tmp_path, out: str = "out") -> Engine:
    engine = Engine(models=tmp_path / "models", output_dir=tmp_path / out, input_dir=tmp_path / "in", device="cpu")
    engine.env.temp_dir = str(tmp_path / "temp")  # a failed save is kept here (not in the shared /tmp/nodegen)
    return engine


@pytest.fixture
def engine(tmp_path):
    return _engine(tmp_path)


def _doc(**saves: dict) -> dict:
    """Three distinct noisy frames (EmptyImage batch + seeded noise) into each save node given."""
    nodes = {
        "1": {"type": "EmptyImage", "inputs": {"width": W, "height": H, "batch_size": 3, "color": 0x806040}},
        "2": {"type": "ImageAddNoise", "inputs": {"image": {"from": ["1", "image"]}, "seed": 7, "strength": 0.5}},
    }
    for nid, (kind, inputs) in saves.items():
        nodes[nid] = {"type": kind, "inputs": {"images": {"from": ["2", "image"]}, **inputs}}
    return {"format": "nodegen-workflow", "version": 1, "nodes": nodes}


def _frames(path) -> list[tuple[list, float]]:
    """Each frame's RGB pixels and duration (ms)."""
    out = []
    with Image.open(path) as im:
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            im.load()
            out.append((list(im.convert("RGB").getdata()), im.info.get("duration")))
    return out


def _ok(result):
    assert result.ok, (result.problems, [str(f) for f in result.failures])
    return result


def test_webp_holds_every_frame_at_fps_lossless_exact_and_lossy_close(engine):
    result = _ok(engine.run(_doc(
        **{"3": ("SaveAnimatedWEBP", {"filename_prefix": "exact", "fps": 8.0, "lossless": True,
                                      "quality": 80, "method": "fastest"}),
           "4": ("SaveAnimatedWEBP", {"filename_prefix": "lossy", "fps": 3.0, "lossless": False,
                                      "quality": 40, "method": "default"})})))
    exact, lossy = result.ui["3"]["paths"][0], result.ui["4"]["paths"][0]
    assert result.paths == [exact, lossy] and exact.endswith("exact_00001.webp")
    source = [list(f.convert("RGB").getdata()) for f in result.ui["3"]["images"]]  # the editor's preview
    assert len(source) == 3 and len({tuple(p) for p in source}) == 3
    with Image.open(exact) as im:
        assert (im.format, im.size, im.n_frames, im.is_animated) == ("WEBP", (W, H), 3, True)
    assert _frames(exact) == [(p, 125) for p in source]  # 1000 / 8 fps
    decoded = _frames(lossy)
    assert [d for _p, d in decoded] == [333] * 3  # int(1000 / 3), as ComfyUI writes it
    def distance(a: list, b: list) -> int:
        return sum(abs(x - y) for pa, pb in zip(a, b, strict=True) for x, y in zip(pa, pb, strict=True))

    for i, (pixels, _d) in enumerate(decoded):  # lossy: changed, yet nearest its own frame, in order
        assert sorted(range(3), key=lambda j: distance(pixels, source[j]))[0] == i
        assert distance(pixels, source[i]) > 0
    assert os.path.getsize(lossy) < os.path.getsize(exact)


def test_apng_frames_timing_and_provenance_read_back(engine):
    doc = _doc(**{"3": ("SaveAnimatedPNG", {"filename_prefix": "sub/apng", "fps": 6.0, "compress_level": 9})})
    result = _ok(engine.run(doc, set={"2.seed": 11}))
    (path,) = result.paths
    assert path.endswith("sub/apng_00001.png")
    source = [list(f.convert("RGB").getdata()) for f in result.ui["3"]["images"]]
    with Image.open(path) as im:
        assert (im.format, im.size, im.n_frames, im.is_animated) == ("PNG", (W, H), 3, True)
    decoded = _frames(path)
    assert [p for p, _d in decoded] == source
    assert all(d == pytest.approx(1000 / 6) for _p, d in decoded)  # exactly 1/6 s: APNG stores a fraction
    # the same text chunks as SaveImage's PNGs, read by the same readers
    assert png.read_workflow(path)["nodes"]["2"]["inputs"]["seed"] == 11  # as run, after the override
    values = png.read_values(path)
    assert values["node_id"] == "3" and values["frames"] == 3 and values["batch_index"] is None
    assert values["inputs"]["2"] == {"seed": 11, "strength": 0.5}
    assert values["inputs"]["3"] == {"filename_prefix": "sub/apng", "fps": 6.0, "compress_level": 9}
    assert open_any(path).data["nodes"]["3"]["type"] == "SaveAnimatedPNG"


def test_webp_provenance_reads_back_and_the_file_reruns(engine, tmp_path):
    doc = _doc(**{"3": ("SaveAnimatedWEBP", {"filename_prefix": "wf", "fps": 2.5, "lossless": True,
                                             "quality": 80, "method": "slowest"})})
    doc["metadata"] = {"name": "café ☕"}  # EXIF text is ASCII: non-ASCII characters travel escaped
    (path,) = _ok(engine.run(doc, set={"2.seed": 3})).paths
    texts = webp.webp_text(path)
    assert set(texts) == {png.WORKFLOW_KEY, png.VALUES_KEY}
    values = webp.read_values(path)
    assert values["frames"] == 3 and values["inputs"]["2"]["seed"] == 3 and values["inputs"]["3"]["fps"] == 2.5
    wf = open_any(path)
    assert wf.data["metadata"]["name"] == "café ☕" and wf.data["nodes"]["2"]["inputs"]["seed"] == 3
    assert not is_native(path)  # the editor never saves JSON over the image
    (copy,) = _ok(_engine(tmp_path, "again").run(wf)).paths
    assert _frames(copy) == _frames(path)
    plain = tmp_path / "plain.webp"
    Image.new("RGB", (4, 4)).save(plain)
    with pytest.raises(png.PngWorkflowError, match="plain.webp: this WEBP holds no workflow"):
        open_any(plain)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.webp"
    cut.write_bytes(data[:-20])  # the EXIF chunk comes last
    with pytest.raises(png.PngWorkflowError, match="cut.webp: the WEBP is truncated"):
        open_any(cut)
    exif_at = data.index(b"EXIF") + 8
    damaged = tmp_path / "damaged.webp"
    damaged.write_bytes(data[:exif_at] + b"\xff" * (len(data) - exif_at))
    with pytest.raises(png.PngWorkflowError, match="damaged.webp: "):
        open_any(damaged)


def test_never_overwrites_and_shares_the_png_counter(engine, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "anim_00004.png").write_bytes(b"a SaveImage file")
    webp_doc = _doc(**{"3": ("SaveAnimatedWEBP", {"filename_prefix": "anim", "fps": 6.0})})
    png_doc = _doc(**{"3": ("SaveAnimatedPNG", {"filename_prefix": "anim", "fps": 6.0})})
    first = _ok(engine.run(webp_doc)).paths[0]
    before = open(first, "rb").read()
    second = _ok(_engine(tmp_path).run(webp_doc)).paths[0]  # a new engine: no cache
    assert (first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]) == ("anim_00001.webp", "anim_00002.webp")
    assert open(first, "rb").read() == before
    assert _ok(engine.run(png_doc)).paths[0].endswith("anim_00005.png")  # after SaveImage's 00004
    assert (out / "anim_00004.png").read_bytes() == b"a SaveImage file"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_job_lists_the_animation_among_its_files(engine, tmp_path):
    from nodegen.runtime.jobs import run_job

    doc = _doc(**{"3": ("SaveAnimatedWEBP", {"filename_prefix": "job", "fps": 6.0}),
                  "4": ("SaveAnimatedPNG", {"filename_prefix": "job", "fps": 6.0})})
    outcome = run_job(engine, doc, tmp_path / "job-1", sync=False)
    assert outcome.status == "done", outcome.error
    assert sorted(outcome.files) == ["job_00001.png", "job_00001.webp"]
    assert webp.read_values(tmp_path / "job-1" / "job_00001.webp")["frames"] == 3


def _comfy_api() -> dict:
    def n(ct, **inputs):
        return {"class_type": ct, "inputs": inputs}

    return {
        "1": n("EmptyImage", width=W, height=H, batch_size=2, color=0x204080),
        "2": n("ImageAddNoise", seed=5, strength=0.4, image=["1", 0]),
        "3": n("SaveAnimatedWEBP", filename_prefix="ComfyUI", fps=12.0, lossless=False, quality=90,
               method="default", images=["2", 0]),
        "4": n("SaveAnimatedPNG", filename_prefix="ComfyUI", fps=4.0, compress_level=4, images=["2", 0]),
    }


#: ComfyUI's widget order (comfy_extras/nodes_images.py, nodes.py), typed here independently of the tables.
WIDGETS = {"EmptyImage": ["width", "height", "batch_size", "color"], "ImageAddNoise": ["seed", "control", "strength"],
           "SaveAnimatedWEBP": ["filename_prefix", "fps", "lossless", "quality", "method"],
           "SaveAnimatedPNG": ["filename_prefix", "fps", "compress_level"]}
OUTPUTS = {"EmptyImage": ["IMAGE"], "ImageAddNoise": ["IMAGE"], "SaveAnimatedWEBP": [], "SaveAnimatedPNG": []}


def test_comfy_workflow_ending_in_animated_saves_imports_in_both_formats_and_runs(engine):
    api = _comfy_api()
    doc, notes = comfy.import_comfy(api)
    assert notes == []
    assert doc["nodes"]["3"]["inputs"] == {"filename_prefix": "ComfyUI", "fps": 12.0, "lossless": False,
                                           "quality": 90, "method": "default", "images": {"from": ["2", "image"]}}
    assert doc["nodes"]["4"]["inputs"] == {"filename_prefix": "ComfyUI", "fps": 4.0, "compress_level": 4,
                                           "images": {"from": ["2", "image"]}}
    assert comfy.export_api(doc) == api
    ui_doc, ui_notes = comfy.import_comfy(ui_from_api(api, WIDGETS, OUTPUTS))
    assert ui_notes == [] and {k: n["inputs"] for k, n in ui_doc["nodes"].items()} == {
        k: n["inputs"] for k, n in doc["nodes"].items()}
    result = _ok(engine.run(doc))
    webp_path, png_path = result.ui["3"]["paths"][0], result.ui["4"]["paths"][0]
    assert webp_path.endswith("ComfyUI_00001.webp") and png_path.endswith("ComfyUI_00001.png")
    assert [d for _p, d in _frames(webp_path)] == [83, 83]  # int(1000 / 12)
    assert [d for _p, d in _frames(png_path)] == [250, 250]


def test_comfyui_webp_with_its_exif_workflow_opens(tmp_path):
    """ComfyUI's layout: "prompt:<API json>" in 0x0110, "workflow:<UI json>" in 0x010F."""
    api = _comfy_api()
    exif = Image.Exif()
    exif[webp.PROMPT_TAG] = "prompt:" + json.dumps(api)
    exif[webp.FIRST_TAG] = "workflow:" + json.dumps(ui_from_api(api, WIDGETS, OUTPUTS))
    path = tmp_path / "ComfyUI_00001_.webp"
    frames = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, exif=exif, lossless=True)
    wf = open_any(path)
    assert wf.data["metadata"]["import"]["chunk"] == "workflow"  # the editor format first, as for PNGs
    assert wf.nodes["3"]["type"] == "SaveAnimatedWEBP" and wf.nodes["3"]["inputs"]["quality"] == 90


def test_bad_input_is_refused_naming_node_and_input(engine):
    doc = _doc(**{"3": ("SaveAnimatedWEBP", {"filename_prefix": "bad", "fps": 0.0, "quality": 101,
                                             "method": "fast"}),
                  "4": ("SaveAnimatedPNG", {"filename_prefix": "../escape", "compress_level": 10})})
    result = engine.run(doc)
    assert result.status == "invalid" and not result.paths
    problems = [str(p) for p in result.problems]
    for start in ("node 3 (SaveAnimatedWEBP), input 'fps'", "node 3 (SaveAnimatedWEBP), input 'quality'",
                  "node 3 (SaveAnimatedWEBP), input 'method'", "node 4 (SaveAnimatedPNG), input 'compress_level'",
                  "node 4 (SaveAnimatedPNG), input 'filename_prefix'"):
        assert any(p.startswith(start) for p in problems), (start, problems)
    # what validation cannot see (a linked value, the frame size) fails the run with the same naming
    linked = _doc(**{"3": ("SaveAnimatedPNG", {"filename_prefix": "bad", "fps": {"from": ["9", "value"]}})})
    linked["nodes"]["9"] = {"type": "Float", "inputs": {"value": -1.0}}
    (failure,) = engine.run(linked).failures
    assert failure.node_id == "3" and failure.type == "SaveAnimatedPNG" and "input 'fps'" in failure.error
    wide = _doc(**{"3": ("SaveAnimatedWEBP", {"filename_prefix": "wide", "fps": 6.0})})
    wide["nodes"]["1"]["inputs"].update(width=16384, height=1, batch_size=1)
    (failure,) = engine.run(wide).failures
    assert "input 'images' is 16384x1" in failure.error and "at most 16383" in failure.error
    assert not list(Path(engine.env.output_dir).glob("*.webp"))


def test_node_refuses_an_empty_batch(engine):
    import torch

    from nodegen.kernel.registry import default_registry

    nd = default_registry()["SaveAnimatedWEBP"]
    with pytest.raises(ValueError, match="input 'images' holds no frames"):
        nd.run(None, images=torch.zeros(0, 4, 4, 3), filename_prefix="x", fps=6.0, lossless=True, quality=80,
               method="default")


def test_cli_runs_an_animated_webp_and_info_describes_it(tmp_path, capsys):
    from main import main

    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(_doc(**{"3": ("SaveAnimatedWEBP", {"filename_prefix": "cli", "fps": 6.0})})))
    assert main(["run", str(graph), "--out", str(tmp_path / "o1"), "--device", "cpu"]) == 0
    [made] = list((tmp_path / "o1").glob("*.webp"))
    assert main(["run", str(made), "--out", str(tmp_path / "o2"), "--device", "cpu"]) == 0
    [again] = list((tmp_path / "o2").glob("*.webp"))
    assert _frames(again) == _frames(made)
    capsys.readouterr()
    assert main(["info", str(made), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "WEBP image with a nodegen workflow"
    assert info["values"]["frames"] == 3 and info["outputs"] == ["3"]
    assert main(["info", str(made)]) == 0
    assert "values used for this image (saved by node 3, 3 frames):" in capsys.readouterr().out


def test_an_animation_that_cannot_be_saved_is_kept_and_the_error_says_where(engine, monkeypatch):
    import errno

    from nodegen.formats import png_save

    real, calls = png_save.save_exclusive, []

    def disk_full_once(write, folder, prefix, suffix, digits=5):
        calls.append(folder)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(folder))
        return real(write, folder, prefix, suffix, digits)

    monkeypatch.setattr(png_save, "save_exclusive", disk_full_once)
    result = engine.run(_doc(**{"3": ("SaveAnimatedWEBP", {"filename_prefix": "full", "fps": 6.0})}))
    (failure,) = result.failures
    assert "cannot save the animation in" in failure.error and "No space left on device" in failure.error
    kept = failure.error.split("the animation was kept as ")[1].split()[0]
    assert kept == str(engine.env.temp_dir) + "/unsaved/nodegen_00001.webp" and webp.read_values(kept)["frames"] == 3
