"""Engine.run prepares a document once per change: only edited nodes are checked again, the
shared prepared document is never modified, and every check still happens when it should."""

from __future__ import annotations

import copy
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.kernel.registry import NodeRegistry
from nodegen.kernel.workflow import WorkflowError, schema_problems
from nodegen.runtime import prepare as prepare_mod
from nodegen.runtime.engine import Engine
from nodegen.runtime.prepare import plainly_valid_node, plainly_valid_rest

RAN: list[int] = []


@node("PConst", inputs=[Input.int("value", 0)], outputs=[Output("value", T.INT)])
def pconst(ctx, value):
    return value


@node("PSink", output=True, inputs=[Input.link("value", T.INT)])
def psink(ctx, value):
    RAN.append(value)
    return {}


def _engine() -> Engine:
    reg = NodeRegistry()
    for nd in (pconst, psink):
        reg.register(nd, "test")
    return Engine(registry=reg, device="cpu", model_manager=object())


def _doc(n: int = 3, value: int = 1) -> dict:
    nodes = {}
    for i in range(n):
        nodes[f"c{i}"] = {"type": "PConst", "inputs": {"value": value + i}}
        nodes[f"s{i}"] = {"type": "PSink", "inputs": {"value": {"from": [f"c{i}", "value"]}}}
    return {"format": "nodegen-workflow", "version": 1, "nodes": nodes}


@pytest.fixture
def checks(monkeypatch):
    """Counts the JSON Schema checks the preparer asks for (documents and single nodes)."""
    calls: list[dict] = []

    def counting(doc):
        calls.append(doc)
        return schema_problems(doc)

    monkeypatch.setattr(prepare_mod, "schema_problems", counting)
    monkeypatch.setattr(prepare_mod, "plainly_valid_node", lambda nid, n: False)
    monkeypatch.setattr(prepare_mod, "plainly_valid_rest", lambda rest: False)
    return calls


def test_unchanged_nodes_are_not_checked_again(checks):
    engine = _engine()
    assert engine.run(_doc(50)).ok
    assert len(checks) == 100 + 1  # every node, and the rest of the document
    checks.clear()
    assert engine.run(_doc(50)).ok  # a new but equal document
    assert checks == []
    edited = _doc(50)
    edited["nodes"]["c7"]["inputs"]["value"] = 99
    assert engine.run(edited).ok
    assert [list(c["nodes"]) for c in checks] == [["c7"]]


def test_an_invalid_node_is_reported_on_every_run():
    engine = _engine()
    bad = _doc(2)
    bad["nodes"]["c1"]["mode"] = "sleeping"
    for _ in range(2):
        with pytest.raises(WorkflowError, match="nodes/c1/mode"):
            engine.run(copy.deepcopy(bad))


def test_an_edit_in_place_is_seen_and_the_source_is_never_modified():
    engine = _engine()
    doc = _doc(2, value=1)
    before = copy.deepcopy(doc)
    RAN.clear()
    engine.run(doc, set={"c0.value": 40})
    assert doc == before  # set overrides do not touch the caller's document
    assert sorted(RAN) == [2, 40]
    doc["nodes"]["c1"]["inputs"]["value"] = 7  # edited in place between runs
    RAN.clear()
    result = engine.run(doc)
    assert sorted(RAN) == [1, 7]  # the override is gone, the edit is seen
    assert result.ok


def test_prepare_hands_out_a_copy_the_caller_owns():
    engine = _engine()
    doc = _doc(1)
    wf = engine.prepare(doc)
    wf.set("c0.value", 123)
    RAN.clear()
    engine.run(doc)
    assert RAN == [1]


def test_set_errors_name_the_key():
    engine = _engine()
    with pytest.raises(WorkflowError, match="cannot set 'nope.value'"):
        engine.run(_doc(1), set={"nope.value": 1})
    with pytest.raises(WorkflowError, match="cannot set 'value'"):
        engine.run(_doc(1), set={"value": 1})


def test_a_file_is_read_again_when_it_changes(tmp_path):
    engine = _engine()
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(_doc(1, value=5)))
    RAN.clear()
    engine.run(str(path))
    doc = _doc(1, value=6)
    path.write_text(json.dumps(doc))
    st_ = path.stat()
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10**9))  # a coarse clock still sees it
    engine.run(str(path))
    assert RAN == [5, 6]
    assert engine.env.workflow_dir == tmp_path.resolve()


def test_older_documents_take_the_full_path():
    engine = _engine()
    old = {"format": "nodegen-workflow", "version": 0,
           "nodes": [{"id": "c", "type": "PConst", "inputs": {"value": 3}},
                     {"id": "s", "type": "PSink", "inputs": {"value": ["c", "value"]}}]}
    RAN.clear()
    assert engine.run(old).ok
    assert RAN == [3]


# -- the fast node check agrees with the JSON Schema --------------------------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | st.text(max_size=3),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                     max_leaves=6)
_num = st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False)
_ui = st.fixed_dictionaries({}, optional={
    "pos": st.lists(_num, min_size=1, max_size=3) | _json, "size": st.lists(_num, min_size=2, max_size=2) | _json,
    "color": st.text(max_size=3) | _json, "collapsed": st.booleans() | _json})
_node = st.fixed_dictionaries({}, optional={
    "type": st.text(max_size=4) | _json, "type_version": st.integers(-2, 3) | st.booleans() | _json,
    "title": st.text(max_size=3) | _json, "mode": st.sampled_from(["normal", "muted", "bypass", "x"]) | _json,
    "inputs": st.dictionaries(st.text(max_size=3), _json, max_size=2) | _json, "ui": _ui | _json,
    "extra": _json})


@settings(max_examples=150, deadline=None)
@given(nid=st.text(max_size=3) | st.just("x" * 201), n=_node | _json)
def test_the_fast_node_check_never_passes_what_the_schema_refuses(nid, n):
    problems = schema_problems({"format": "nodegen-workflow", "version": 1, "nodes": {nid: n}})
    if plainly_valid_node(nid, n):
        assert problems == []


def test_the_example_graphs_take_the_fast_check():
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[1].joinpath("graphs").glob("*.json")):
        for nid, n in json.loads(path.read_text("utf-8"))["nodes"].items():
            assert plainly_valid_node(nid, n), (path.name, nid)


_rest = st.fixed_dictionaries({"format": st.just("nodegen-workflow") | _json, "version": st.integers(0, 2) | _json},
                              optional={"metadata": st.dictionaries(st.sampled_from(["name", "author", "x"]),
                                                                    st.text(max_size=2) | _json, max_size=2) | _json,
                                        "ui": st.dictionaries(st.text(max_size=2), _json, max_size=2) | _json,
                                        "groups": st.lists(_json, max_size=2), "other": _json})


@settings(max_examples=100, deadline=None)
@given(rest=_rest)
def test_the_fast_document_check_never_passes_what_the_schema_refuses(rest):
    if plainly_valid_rest(rest):
        assert schema_problems({**rest, "nodes": {}}) == []
