"""Opening what people share: API files with non-node entries, Windows model names, optional links,
ComfyUI's folder suffixes, and running the valid outputs of a partly broken workflow."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nodegen.cli import main
from nodegen.formats import comfy
from nodegen.kernel.executor import Executor
from nodegen.kernel.plan import plan
from nodegen.models.paths import ModelPaths
from nodegen.runtime.engine import Engine
from tests.support import testnodes as tn
from tests.support.testnodes import doc, ln


def test_api_file_with_entries_that_are_not_nodes_imports_the_nodes():
    data = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["1", 0]}},
        "extra_pnginfo": {"workflow": {"app": "some front-end"}},
        "3": {"inputs": {"text": "no class"}},
        "version": 2,
    }
    assert comfy.detect(data) == "api"
    doc_, notes = comfy.import_comfy(data)
    assert set(doc_["nodes"]) == {"1", "2"}
    assert doc_["nodes"]["2"]["inputs"]["images"] == {"from": ["1", "image"]}
    skipped = [n for n in notes if "is not a ComfyUI node" in n]
    assert len(skipped) == 3 and any("'extra_pnginfo'" in n for n in skipped)
    assert any("'3'" in n for n in skipped) and any("'version'" in n for n in skipped)


def test_windows_separators_in_model_and_image_names_are_found(tmp_path):
    (tmp_path / "checkpoints" / "SDXL").mkdir(parents=True)
    model = tmp_path / "checkpoints" / "SDXL" / "model.safetensors"
    model.write_bytes(b"x")
    paths = ModelPaths([tmp_path], use_env=False, use_config=False)
    assert paths.resolve("checkpoints", "SDXL\\model.safetensors") == model
    (tmp_path / "in" / "sub").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "in" / "sub" / "a.png")
    engine = Engine(models=tmp_path, input_dir=tmp_path / "in", output_dir=tmp_path / "out")
    assert engine.env.resolve_file("image", "sub\\a.png") == tmp_path / "in" / "sub" / "a.png"


def test_controlnet_apply_advanced_keeps_its_optional_vae_link_both_ways():
    api = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a", "clip": ["4", 1]}},
        "10": {"class_type": "LoadImage", "inputs": {"image": "e.png"}},
        "11": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "c.safetensors"}},
        "12": {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "strength": 0.9, "start_percent": 0.0, "end_percent": 0.8, "positive": ["6", 0],
            "negative": ["6", 0], "control_net": ["11", 0], "image": ["10", 0], "vae": ["4", 2]}},
    }
    doc_, notes = comfy.import_comfy(api)
    assert notes == []
    assert doc_["nodes"]["12"]["inputs"]["vae"] == {"from": ["4", "vae"]}
    assert comfy.export_api(doc_)["12"] == api["12"]
    ui = {"last_node_id": 12, "last_link_id": 1, "version": 0.4, "groups": [], "nodes": [
        {"id": 4, "type": "CheckpointLoaderSimple", "mode": 0, "widgets_values": ["m.safetensors"],
         "outputs": [{"name": "MODEL", "type": "MODEL"}, {"name": "CLIP", "type": "CLIP"},
                     {"name": "VAE", "type": "VAE", "links": [1]}]},
        {"id": 12, "type": "ControlNetApplyAdvanced", "mode": 0, "widgets_values": [0.9, 0.0, 0.8],
         "inputs": [{"name": "vae", "type": "VAE", "link": 1}]}],
        "links": [[1, 4, 2, 12, 0, "VAE"]]}
    doc_, _ = comfy.import_comfy(ui)
    assert doc_["nodes"]["12"]["inputs"] == {"strength": 0.9, "start_percent": 0.0, "end_percent": 0.8,
                                             "vae": {"from": ["4", "vae"]}}


def test_image_folder_suffixes_keep_their_meaning(tmp_path):
    api = {"1": {"class_type": "LoadImage", "inputs": {"image": "render_0001.png [output]"}},
           "2": {"class_type": "LoadImage", "inputs": {"image": "photo.png [input]"}},
           "3": {"class_type": "LoadImage", "inputs": {"image": "plain.png"}}}
    doc_, _ = comfy.import_comfy(api)
    assert doc_["nodes"]["1"]["inputs"]["image"] == "render_0001.png [output]"
    assert doc_["nodes"]["2"]["inputs"]["image"] == "photo.png"
    back = comfy.export_api(doc_)
    assert back["1"]["inputs"]["image"] == "render_0001.png [output]"
    assert back["3"]["inputs"]["image"] == "plain.png"
    # the engine finds an [output] image in its output folder, not in the input folder
    (tmp_path / "out").mkdir()
    (tmp_path / "in").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "out" / "render_0001.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "in" / "photo.png")
    engine = Engine(input_dir=tmp_path / "in", output_dir=tmp_path / "out")
    env = engine.env
    assert env.resolve_file("image", "render_0001.png [output]") == tmp_path / "out" / "render_0001.png"
    assert env.resolve_file("image", "render_0001.png") is None
    assert env.resolve_file("image", "photo.png [input]") == tmp_path / "in" / "photo.png"
    assert env.resolve_file("image", "photo.png [output]") is None


# -- running the valid outputs ---------------------------------------------------------------

def _two_branches() -> dict:
    return doc({
        "1": {"type": "Const", "inputs": {"value": 9}},
        "good": {"type": "Sink", "inputs": {"value": ln("1", "value")}},
        "x": {"type": "NoSuchNode", "inputs": {}},
        "bad": {"type": "Sink", "inputs": {"value": ln("x", "out")}},
        "2": {"type": "Const", "inputs": {"value": -5000}},  # out of range
        "bad2": {"type": "Sink", "inputs": {"value": ln("2", "value")}},
    })


def test_plan_drops_targets_whose_part_is_invalid():
    reg = tn.registry()
    strict = plan(_two_branches(), reg)
    assert not strict.ok and {p.code for p in strict.problems} == {"unknown_type", "out_of_range"}
    p = plan(_two_branches(), reg, drop_invalid=True)
    assert p.ok and p.targets == ["good"] and p.order == ["1", "good"]
    assert set(p.skipped) == {"bad", "bad2"}
    assert [x.code for x in p.skipped["bad"]] == ["unknown_type"]
    assert [(x.node_id, x.code) for x in p.skipped["bad2"]] == [("2", "out_of_range")]
    assert {w.node_id for w in p.warnings} >= {"x", "2"}
    # nothing valid left: the plan fails as before
    only_bad = plan(_two_branches(), reg, targets=["bad"], drop_invalid=True)
    assert not only_bad.ok and only_bad.skipped == {}


def test_executor_keep_going_runs_the_valid_outputs():
    ex = Executor(tn.registry())
    assert ex.run(_two_branches()).status == "invalid"
    r = ex.run(_two_branches(), keep_going=True)
    assert r.status == "failed" and r.ui["good"]["values"] == [9]
    assert set(r.plan.skipped) == {"bad", "bad2"}


def test_cli_keep_going_runs_the_valid_output_of_an_imported_workflow(tmp_path, capsys):
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "in.png")
    api = {
        "1": {"class_type": "LoadImage", "inputs": {"image": str(tmp_path / "in.png")}},
        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ok", "images": ["1", 0]}},
        "3": {"class_type": "FancyFaceFixer", "inputs": {"image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"filename_prefix": "fixed", "images": ["3", 0]}},
    }
    path = tmp_path / "shared.json"
    path.write_text(json.dumps(api))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    assert not out.exists() or not list(out.glob("*.png"))
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), "--keep-going"]) == 1
    assert [p.name.split("_")[0] for p in out.glob("*.png")] == ["ok"]
    err = capsys.readouterr().err
    assert "skipped output node 4" in err and "FancyFaceFixer" in err


@pytest.mark.parametrize("keep", [False, True])
def test_engine_validate_exposes_the_skipped_outputs(keep):
    engine = Engine(registry=tn.registry())
    p = engine.validate(_two_branches(), keep_going=keep)
    assert p.ok is keep and (set(p.skipped) == {"bad", "bad2"}) is keep
