"""Node versions: ImageScale v1 (``upscale_method``) workflows open and run on v2 (``method``);
nodes from a newer version are reported; missing migration steps are clear errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from nodegen.formats import open_any
from nodegen.kernel.migrations import NodeMigrationError, migrate_nodes
from nodegen.kernel.node import Input, Output, node
from nodegen.kernel.registry import NodeRegistry, default_registry
from nodegen.runtime.engine import Engine


def _doc(scale_node: dict, prefix: str) -> dict:
    return {"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "LoadImage", "inputs": {"image": "src.png"}},
        "2": scale_node,
        "3": {"type": "SaveImage", "inputs": {"images": {"from": ["2", "image"]}, "filename_prefix": prefix}}}}


V1 = {"type": "ImageScale", "type_version": 1, "title": "Scale",
      "inputs": {"image": {"from": ["1", "image"]}, "upscale_method": "nearest-exact", "width": 5, "height": 3,
                 "crop": "disabled"}}
V2 = {"type": "ImageScale", "type_version": 2,
      "inputs": {"image": {"from": ["1", "image"]}, "method": "nearest-exact", "width": 5, "height": 3,
                 "crop": "disabled"}}


@pytest.fixture
def engine(tmp_path):
    indir = tmp_path / "in"
    indir.mkdir()
    img = Image.new("RGB", (10, 6))
    img.putdata([(x * 25, y * 40, (x * y) % 255) for y in range(6) for x in range(10)])
    img.save(indir / "src.png")
    return Engine(input_dir=indir, output_dir=tmp_path / "out", device="cpu")


def test_image_scale_is_version_2_with_a_migration_from_1():
    nd = default_registry()["ImageScale"]
    assert nd.version == 2 and "method" in nd.input_names and "upscale_method" not in nd.input_names
    assert nd.migrations[1]({"upscale_method": "area", "width": 3, "image": {"from": ["1", "image"]}}) == \
        {"method": "area", "width": 3, "image": {"from": ["1", "image"]}}


def test_v1_workflow_opens_validates_and_runs_like_v2(engine, tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(_doc(V1, "v1")))
    wf = engine.prepare(str(path))
    assert wf.nodes["2"]["type_version"] == 2
    assert wf.nodes["2"]["inputs"] == V2["inputs"] and wf.nodes["2"]["title"] == "Scale"
    assert engine.validate(str(path)).ok
    old = engine.run(str(path))
    new = engine.run(_doc(V2, "v2"))
    assert old.ok and new.ok, (old.problems, old.failures, new.problems)
    a, b = Image.open(old.paths[0]), Image.open(new.paths[0])
    assert a.size == (5, 3) and list(a.getdata()) == list(b.getdata())
    wf.save(tmp_path / "upgraded.json")  # saving writes the upgraded form
    saved = json.loads((tmp_path / "upgraded.json").read_text())["nodes"]["2"]
    assert saved["type_version"] == 2 and "upscale_method" not in saved["inputs"]


def test_v1_without_migration_would_fail_validation(engine):
    """The migration is what makes the old file work: unmigrated, 'upscale_method' is unknown."""
    from nodegen.kernel.plan import plan

    problems = plan(_doc(V1, "x"), engine.registry, env=engine.env).problems
    codes = {(p.input, p.code) for p in problems}
    assert ("upscale_method", "unknown_input") in codes


def test_node_from_a_newer_version_is_reported(engine):
    doc = _doc({**V2, "type_version": 3}, "n")
    doc["nodes"]["4"] = {"type": "ImageScale", "type_version": 7, "inputs": {"image": {"from": ["1", "image"]}}}
    plan = engine.validate(doc)
    [err] = [p for p in plan.problems if p.code == "newer_version"]
    assert err.node_id == "2" and "version 3 of ImageScale" in err.message and "version 2" in err.message
    [warn] = [p for p in plan.warnings if p.code == "newer_version"]  # node 4 is not needed
    assert warn.node_id == "4" and warn.severity == "warning"
    assert engine.prepare(doc).nodes["2"]["type_version"] == 3  # left untouched


def test_missing_migration_step_names_the_node():
    @node("Evolving", version=3, migrations={2: lambda i: i}, inputs=[Input.int("x", 0)],
          outputs=[Output("x", Input.int("x").type)])
    def evolving(ctx, x):
        return x

    reg = NodeRegistry()
    reg.register(evolving)
    doc = {"nodes": {"7": {"type": "Evolving", "type_version": 1, "title": "Old", "inputs": {"x": 1}}}}
    with pytest.raises(NodeMigrationError, match="node 7 \\(Old\\): Evolving version 1 cannot be upgraded to 3"):
        migrate_nodes(doc, reg)


def test_comfy_import_writes_the_version_its_mapping_targets():
    from nodegen.formats import comfy

    doc, _ = comfy.import_comfy({"1": {"class_type": "ImageScale", "inputs": {
        "upscale_method": "area", "width": 8, "height": 8, "crop": "center", "image": ["2", 0]}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "a.png"}}})
    assert doc["nodes"]["1"]["type_version"] == 2 and doc["nodes"]["1"]["inputs"]["method"] == "area"
    # Workflow.load path: the same through parse
    assert open_any({"1": {"class_type": "ImageScaleBy", "inputs": {
        "upscale_method": "area", "scale_by": 2.0, "image": ["1", 0]}}}).nodes["1"]["inputs"]["method"] == "area"
