"""Validation: every problem code, all problems at once, needed part only."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodegen.kernel.node import Input, Output, node
from nodegen.kernel.plan import plan
from nodegen.kernel.problems import CODES
from nodegen.kernel.types import IMAGE
from nodegen.models.paths import ModelPaths
from nodegen.runtime.engine import Environment
from tests.support import testnodes as tn
from tests.support.testnodes import doc, ln


@node("NeedsFile", category="test", inputs=[Input.file("ckpt", "checkpoints"), Input.file("img", "image")],
      outputs=[Output("image", IMAGE)])
def needs_file(ctx, ckpt, img):
    return None


@pytest.fixture()
def reg():
    r = tn.registry()
    r.register(needs_file, "tests")
    return r


def codes(problems):
    return sorted((p.node_id, p.input, p.code) for p in problems)


def test_unknown_type_with_suggestion(reg):
    p = plan(doc({"1": {"type": "Ad"}}), reg, ["1"])
    (pr,) = p.problems
    assert pr.code == "unknown_type" and "Add" in pr.message


def test_all_problems_at_once(reg):
    d = doc({
        "1": {"type": "Const", "title": "Seed", "inputs": {"value": "x", "bogus": 1}},
        "2": {"type": "Add", "inputs": {"a": ln("9", "value"), "b": ln("1", "nope")}},
        "3": {"type": "Choose", "inputs": {"mode": "third", "text": 5, "opt": ln("4", "text")}},
        "4": {"type": "Choose", "inputs": {"mode": "first", "text": ""}},
        "5": {"type": "Const", "inputs": {"value": -5000}},
        "6": {"type": "Sink", "inputs": {}},
        "7": {"type": "Sink", "inputs": {"value": ln("2", "sum")}},
        "8": {"type": "Sink", "inputs": {"value": ln("3", "text")}},
        "9x": {"type": "Sink", "inputs": {"value": ln("5", "value")}},
        "10": {"type": "Slow", "inputs": {"x": 5}},
        "11": {"type": "Sink", "inputs": {"value": ln("10", "x")}},
    })
    p = plan(d, reg)
    assert codes(p.problems) == sorted([
        ("1", "value", "wrong_type"), ("1", "bogus", "unknown_input"),
        ("2", "a", "missing_node"), ("2", "b", "missing_output"),
        ("3", "mode", "invalid_choice"), ("3", "text", "wrong_type"), ("3", "opt", "type_mismatch"),
        ("5", "value", "out_of_range"), ("6", "value", "missing_input"),
        ("10", "x", "wrong_type"),
    ])
    msgs = {(p.node_id, p.input): p for p in p.problems}
    assert msgs[("1", "value")].node_title == "Seed"
    assert "INT" in msgs[("3", "opt")].message and "STRING" in msgs[("3", "opt")].message
    assert "'first', 'second'" in msgs[("3", "mode")].message
    assert "minimum -1000" in msgs[("5", "value")].message


def test_cycle_names_its_nodes(reg):
    d = doc({
        "1": {"type": "Add", "inputs": {"a": ln("2", "sum")}},
        "2": {"type": "Add", "inputs": {"a": ln("1", "sum")}},
        "3": {"type": "Sink", "inputs": {"value": ln("2", "sum")}},
    })
    p = plan(d, reg)
    cyc = [x for x in p.problems if x.code == "cycle"]
    assert {x.node_id for x in cyc} == {"1", "2"}
    assert "1 (Add)" in cyc[0].message and "2 (Add)" in cyc[0].message


def test_missing_files(reg, tmp_path):
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "ok.safetensors").write_bytes(b"x")
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "a.png").write_bytes(b"x")
    env = Environment(ModelPaths([tmp_path / "models"], use_env=False, use_config=False),
                      tmp_path / "out", tmp_path / "input")
    good = doc({"1": {"type": "NeedsFile", "inputs": {"ckpt": "ok.safetensors", "img": "a.png"}}})
    assert plan(good, reg, ["1"], env).ok
    bad = doc({"1": {"type": "NeedsFile", "inputs": {"ckpt": "gone.safetensors", "img": "b.png"}}})
    p = plan(bad, reg, ["1"], env)
    assert codes(p.problems) == [("1", "ckpt", "missing_file"), ("1", "img", "missing_file")]
    assert str(Path(tmp_path / "models" / "checkpoints")) in p.problems[0].message


def test_broken_branch_not_needed_is_a_warning(reg):
    d = doc({
        "1": {"type": "Const", "inputs": {"value": 1}},
        "2": {"type": "Sink", "inputs": {"value": ln("1", "value")}},
        "3": {"type": "Unknown"},
        "4": {"type": "Add", "inputs": {"a": ln("3", "x")}},
    })
    p = plan(d, reg)
    assert p.ok and p.order == ["1", "2"]
    assert codes(p.warnings) == [("3", None, "unknown_type")]
    assert all(w.severity == "warning" for w in p.warnings)


def test_unknown_target_and_no_outputs(reg):
    assert codes(plan(doc({"1": {"type": "Const"}}), reg).problems) == [(None, None, "no_outputs")]
    assert codes(plan(doc({"1": {"type": "Const"}}), reg, ["zz"]).problems) == [(None, None, "unknown_target")]


def test_newer_version_and_muted_source_and_invalid_link(reg):
    d = doc({
        "1": {"type": "Const", "type_version": 7, "inputs": {"value": 1}},
        "2": {"type": "Const", "mode": "muted", "inputs": {"value": 1}},
        "3": {"type": "Add", "inputs": {"a": ln("1", "value"), "b": ln("2", "value")}},
        "4": {"type": "Sink", "inputs": {"value": {"from": ["3", 5]}}},
    })
    p = plan(d, reg)
    assert codes(p.problems) == [("1", None, "newer_version"), ("3", "b", "muted_source"),
                                 ("4", "value", "invalid_link")]
    assert "version 7" in p.problems[0].message


def test_every_code_is_documented():
    import tests.test_validate as me

    src = Path(me.__file__).read_text()
    for code in CODES:
        assert f'"{code}"' in src or code in ("missing_file",), code


def test_not_a_file_bad_target_and_empty_workflow(reg, tmp_path):
    from nodegen.kernel.registry import default_registry

    (tmp_path / "input" / "dir.png").mkdir(parents=True)
    env = Environment(ModelPaths([], use_env=False, use_config=False), tmp_path / "out", tmp_path / "input")
    p = plan(doc({"1": {"type": "NeedsFile", "inputs": {"ckpt": "/dev/zero", "img": "dir.png"}}}), reg, ["1"], env)
    assert codes(p.problems) == [("1", "ckpt", "not_a_file"), ("1", "img", "not_a_file")]
    full = default_registry()
    save = doc({"1": {"type": "SaveImage", "inputs": {"images": None, "filename_prefix": "../x"}}})
    assert ("1", "filename_prefix", "bad_target") in codes(plan(save, full, ["1"], env).problems)
    assert [x.code for x in plan(doc({}), reg, None, env).problems] == ["empty_workflow"]
