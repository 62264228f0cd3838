"""A NODE reference (--set, --target, sweep --over, the server's "set") that names no node is refused
with the nodes it could name."""

from __future__ import annotations

import pytest

from nodegen.kernel.workflow import Workflow


def test_unknown_reference_lists_the_nodes():
    wf = Workflow({"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "CheckpointLoader", "title": "Model", "inputs": {}},
        "5": {"type": "KSampler", "inputs": {}}}})
    assert wf.resolve_node("KSampler") == "5"
    with pytest.raises(KeyError) as e:
        wf.set("Samplr.seed", 3)
    assert "'Samplr'" in str(e.value) and "1 (Model), 5 (KSampler)" in str(e.value)
