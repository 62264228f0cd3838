"""nodegen.run, the three-line API, raises on a run that did not succeed (naming the node and input),
instead of handing back a result whose ``images`` is empty."""

from __future__ import annotations

import pytest

import nodegen
from tests.support import testnodes as tn
from tests.support.testnodes import doc, ln


def test_invalid_workflow_raises_naming_node_and_input(tmp_path):
    wf = doc({"1": {"type": "Const", "inputs": {"value": 1}}, "2": {"type": "Sink", "inputs": {"value": ln("1", "value")}}})
    with pytest.raises(nodegen.ValidationError) as e:
        nodegen.run(wf, set={"1.value": "x"}, registry=tn.registry(), output_dir=tmp_path)
    assert "node 1" in str(e.value) and "input 'value'" in str(e.value)
    assert [p.input for p in e.value.problems] == ["value"]


def test_failed_node_raises_naming_it(tmp_path):
    wf = doc({"1": {"type": "Fail", "inputs": {}}, "2": {"type": "Sink", "inputs": {"value": ln("1", "x")}}})
    with pytest.raises(nodegen.RunError) as e:
        nodegen.run(wf, registry=tn.registry(), output_dir=tmp_path)
    assert "node 1 (Fail, Fail) failed" in str(e.value) and "boom" in str(e.value)
    assert e.value.result.status == "failed"


def test_check_false_returns_the_result(tmp_path):
    wf = doc({"1": {"type": "Fail", "inputs": {}}, "2": {"type": "Sink", "inputs": {"value": ln("1", "x")}}})
    result = nodegen.run(wf, check=False, registry=tn.registry(), output_dir=tmp_path)
    assert result.status == "failed" and result.images == []
