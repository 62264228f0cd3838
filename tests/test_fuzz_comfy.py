"""Issue 18, ComfyUI files: mutated editor (UI) and API files, and generated editor documents, go
through import, validation, export and the ``import`` command: each ends in a workflow or a clear
error, never a traceback (84 of 1,209 fuzzed files crashed the importer before)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodegen.cli import main
from nodegen.formats import open_any
from nodegen.kernel.plan import plan
from nodegen.kernel.registry import default_registry
from nodegen.kernel.workflow import WorkflowError
from tests.support.fuzzing import JSON, fuzz_settings, mutated, time_limit

DATA = Path(__file__).resolve().parent / "data" / "comfy"
UI_SEEDS = [json.loads(p.read_text()) for p in sorted(DATA.glob("*.ui.json"))]
API_SEEDS = [json.loads(p.read_text()) for p in sorted(DATA.glob("*.api.json"))]
COMFY_TYPES = sorted({n["type"] for d in UI_SEEDS for n in d.get("nodes", [])})


def _import_validate_export(doc) -> None:
    from nodegen.formats.comfy import ComfyExportError, export_api

    registry = default_registry()
    with time_limit(20):
        try:
            wf = open_any(doc)
        except WorkflowError:
            return
        plan(wf.data, registry, None, None)
        try:
            export_api(wf.data, registry, [])
        except ComfyExportError:
            pass


@settings(fuzz_settings(150), suppress_health_check=[HealthCheck.too_slow])
@given(doc=mutated(UI_SEEDS))
def test_mutated_ui_files(doc):
    _import_validate_export(doc)


@settings(fuzz_settings(100), suppress_health_check=[HealthCheck.too_slow])
@given(doc=mutated(API_SEEDS))
def test_mutated_api_files(doc):
    _import_validate_export(doc)


@st.composite
def ui_documents(draw) -> dict:
    """An editor-format document from scratch: nodes with inputs, outputs and widget values, links
    that may point anywhere."""
    n = draw(st.integers(1, 5))
    ids = draw(st.lists(st.one_of(st.integers(-2, 8), st.sampled_from(["1", None, 1.5])), min_size=n, max_size=n))
    nodes = []
    for nid in ids:
        nodes.append({
            "id": nid, "type": draw(st.sampled_from(COMFY_TYPES + ["Reroute", "PrimitiveNode", "Note", "X"])),
            "pos": draw(st.sampled_from([[0, 0], [1e308, -1], "x", None])),
            "mode": draw(st.sampled_from([0, 2, 4, 9, "x"])),
            "inputs": draw(st.lists(st.fixed_dictionaries({
                "name": st.sampled_from(["model", "clip", "samples", "vae", "image", "seed", "text", "x"]),
                "type": st.sampled_from(["MODEL", "CLIP", "LATENT", "INT", "*", "X"]),
                "link": st.one_of(st.none(), st.integers(-1, 8))}), max_size=3)),
            "outputs": draw(st.lists(st.fixed_dictionaries({
                "name": st.sampled_from(["MODEL", "CLIP", "VAE", "LATENT", "IMAGE", "INT", "connect to widget input"]),
                "type": st.sampled_from(["MODEL", "LATENT", "INT", "*"]),
                "links": st.one_of(st.none(), st.lists(st.integers(-1, 8), max_size=2))}), max_size=3)),
            "widgets_values": draw(st.one_of(st.lists(JSON, max_size=8), st.dictionaries(st.text(max_size=5), JSON,
                                                                                           max_size=3), st.none())),
        })
    links = draw(st.lists(st.one_of(
        st.tuples(st.integers(0, 8), st.sampled_from(ids), st.integers(-1, 3), st.sampled_from(ids),
                  st.integers(-1, 3), st.sampled_from(["MODEL", "LATENT", "*"])).map(list),
        st.lists(JSON, max_size=7)), max_size=6))
    return {"last_node_id": 9, "last_link_id": 9, "nodes": nodes, "links": links,
            "groups": draw(st.sampled_from([[], [{"title": "g", "bounding": [0, 0, 1, 1]}], [{"bounding": "x"}]])),
            "version": 0.4}


@settings(fuzz_settings(80), suppress_health_check=[HealthCheck.too_slow])
@given(doc=ui_documents())
def test_generated_ui_documents(doc):
    _import_validate_export(doc)


@pytest.fixture()
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NODEGEN_CACHE_DIR", str(tmp_path / "cache"))


@settings(fuzz_settings(25), suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=st.one_of(mutated(UI_SEEDS), mutated(API_SEEDS)))
def test_import_command_exit_codes(tmp_path, capsys, _cache, doc):
    src = tmp_path / "in.json"
    src.write_text(json.dumps(doc))
    with time_limit(20):
        code = main(["import", "comfy", str(src), "-o", str(tmp_path / "out.json")])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err


def test_found_by_fuzzing_an_input_named_null():
    """A UI file whose widget input has no name gave a TypeError in validation."""
    from nodegen.kernel.validate import _unknown_input_message

    registry = default_registry()
    assert "has no input None" in _unknown_input_message(registry["KSampler"], None)
