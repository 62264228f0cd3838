"""The workflow file: schema, migrations, round trips, atomic saves, editing."""

from __future__ import annotations

import json
import os

import pytest

from nodegen.kernel.migrations import NodeMigrationError, migrate_nodes
from nodegen.kernel.workflow import VERSION, Workflow, WorkflowError, atomic_write_text, parse
from tests.support import testnodes as tn


def base():
    return {"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "Const", "inputs": {"value": 2}, "ui": {"pos": [1, 2], "future_gui_field": {"x": 1}}},
        "2": {"type": "Sink", "title": "Out", "inputs": {"value": {"from": ["1", "value"]}}},
    }}


def test_round_trip_keeps_unknown_fields(tmp_path):
    data = base()
    data["x-extension"] = {"keep": [1, 2, 3]}
    data["nodes"]["1"]["something_new"] = True
    data["ui"] = {"viewport": {"zoom": 1.5}, "unknown": "yes"}
    p = tmp_path / "a.json"
    p.write_text(json.dumps(data))
    wf = Workflow.load(p)
    wf.save(tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text()) == data


def test_schema_errors_are_all_listed():
    bad = base()
    bad["nodes"]["1"]["ui"]["pos"] = [1]
    bad["nodes"]["2"]["mode"] = "sleeping"
    bad["models"] = [{"name": "x", "sha256": "nothex"}]
    with pytest.raises(WorkflowError) as ei:
        parse(bad)
    assert len(ei.value.problems) == 3


def test_not_a_workflow():
    with pytest.raises(WorkflowError, match="not a nodegen workflow"):
        parse({"nodes": []})
    # the kernel reads only its own format; the formats layer converts a ComfyUI workflow
    with pytest.raises(WorkflowError, match="open_any"):
        parse({"3": {"class_type": "KSampler", "inputs": {}}})
    from nodegen.formats import document_from_data

    assert document_from_data({"3": {"class_type": "KSampler", "inputs": {}}})["nodes"]["3"]["type"] == "KSampler"
    with pytest.raises(WorkflowError, match="ComfyUI"):
        document_from_data({"3": {"class_type": "KSampler", "inputs": []}})
    with pytest.raises(WorkflowError, match="JSON object"):
        parse([1, 2])


def test_newer_version_is_refused_with_the_version_we_read():
    data = base()
    data["version"] = VERSION + 1
    with pytest.raises(WorkflowError, match=f"reads versions up to {VERSION}"):
        parse(data)


def test_migration_from_version_0():
    v0 = {"format": "nodegen-workflow", "version": 0, "nodes": [
        {"id": 1, "type": "Const", "inputs": {"value": 2}},
        {"id": 2, "type": "Sink", "inputs": {"value": ["1", "value"]}},
    ]}
    doc = parse(v0)
    assert doc["version"] == 1
    assert doc["nodes"]["2"]["inputs"]["value"] == {"from": ["1", "value"]}


def test_migration_mechanism_with_a_fake_older_version(monkeypatch):
    from nodegen.kernel import migrations as w

    def fake(doc):
        doc["nodes"] = {k: {"type": v} for k, v in doc.pop("types").items()}
        doc["version"] = 0
        return doc
    monkeypatch.setitem(w.MIGRATIONS, -1, fake)
    doc = parse({"format": "nodegen-workflow", "version": -1, "types": {"1": "Const"}})
    assert doc["nodes"] == {"1": {"type": "Const", "inputs": {}}} or doc["nodes"]["1"]["type"] == "Const"
    assert doc["version"] == VERSION


def test_node_migrations_upgrade_old_inputs():
    reg = tn.registry()
    doc = {"nodes": {"1": {"type": "Upgraded", "type_version": 1, "inputs": {"n": 4}},
                     "2": {"type": "Upgraded", "type_version": 3, "inputs": {"amount": 1}}}}
    assert migrate_nodes(doc, reg) == ["1"]
    assert doc["nodes"]["1"] == {"type": "Upgraded", "type_version": 3, "inputs": {"amount": 4}}
    with pytest.raises(NodeMigrationError, match="no migration from version 0"):
        migrate_nodes({"nodes": {"1": {"type": "Upgraded", "type_version": 0}}}, reg)


def test_atomic_write_never_leaves_half_a_file(tmp_path, monkeypatch):
    p = tmp_path / "g.json"
    atomic_write_text(p, "old")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(p, "new")
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["g.json"]


def test_editing_api():
    wf = Workflow()
    a = wf.add_node("Const", {"value": 1}, title="Seed")
    b = wf.add_node("Sink")
    wf.connect("Seed", "value", b, "value")
    wf.set("Seed.value", 5)
    wf.set(a, "value", 6)
    assert wf.get(a, "value") == 6
    assert list(wf.links()) == [(a, "value", b, "value")]
    wf.remove_node(a)
    assert wf.nodes[b]["inputs"] == {}
    with pytest.raises(KeyError, match="no node"):
        wf.node("nothing")


def test_load_errors_name_the_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{nope")
    with pytest.raises(WorkflowError, match="broken.json: not valid JSON"):
        Workflow.load(p)
    with pytest.raises(WorkflowError, match="missing.json: cannot read"):
        Workflow.load(tmp_path / "missing.json")
