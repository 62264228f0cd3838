"""Property tests: the executor equals a naive recursive evaluation on random DAGs (also across
incremental re-runs with a shared cache), and any JSON thrown at the loader gives a workflow or a
clean error, never a crash."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodegen.kernel.cache import OutputCache
from nodegen.kernel.executor import Executor
from nodegen.kernel.plan import plan
from nodegen.kernel.workflow import WorkflowError, parse
from tests.support import testnodes as tn
from tests.support.testnodes import doc, ln

REG = tn.registry()


@st.composite
def dags(draw):
    n = draw(st.integers(1, 25))
    nodes = {}
    for i in range(n):
        if i == 0 or draw(st.booleans()) and i < 3:
            nodes[str(i)] = {"type": "Const", "inputs": {"value": draw(st.integers(-50, 50))}}
            continue
        kind = draw(st.sampled_from(["Const", "Add", "Add", "Pair"]))
        if kind == "Const":
            nodes[str(i)] = {"type": "Const", "inputs": {"value": draw(st.integers(-50, 50))}}
            continue
        def operand(i=i):
            j = draw(st.integers(0, i - 1))
            src = nodes[str(j)]
            out = {"Const": "value", "Add": "sum", "Pair": draw(st.sampled_from(["a", "b"]))}[src["type"]]
            return ln(str(j), out)
        if kind == "Add":
            b = operand() if draw(st.booleans()) else draw(st.integers(-5, 5))
            nodes[str(i)] = {"type": "Add", "inputs": {"a": operand(), "b": b}}
        else:
            nodes[str(i)] = {"type": "Pair", "inputs": {"a": operand(), "b": operand()}}
    sinks = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4, unique=True))
    for k, j in enumerate(sinks):
        src = nodes[str(j)]
        out = {"Const": "value", "Add": "sum", "Pair": "a"}[src["type"]]
        nodes[f"s{k}"] = {"type": "Sink", "inputs": {"value": ln(str(j), out)}}
    return doc(nodes)


def naive(d):
    memo = {}

    def val(nid, out):
        if (nid, out) in memo:
            return memo[(nid, out)]
        n = d["nodes"][nid]
        ins = {k: (val(*v["from"]) if isinstance(v, dict) else v) for k, v in n["inputs"].items()}
        t = n["type"]
        if t == "Const":
            r = {"value": ins["value"]}
        elif t == "Add":
            r = {"sum": ins["a"] + ins.get("b", 0)}
        else:
            r = {"a": ins["a"] * 10, "b": ins["b"] * 10}
        for k, v in r.items():
            memo[(nid, k)] = v
        return r[out]
    return {nid: [val(*n["inputs"]["value"]["from"])] for nid, n in d["nodes"].items() if n["type"] == "Sink"}


SHARED = Executor(REG, OutputCache({"cpu": 10**6}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_executor_equals_naive_evaluation(d):
    fresh = Executor(REG).run(d)
    assert fresh.ok, fresh.failures or fresh.problems
    expected = naive(d)
    assert {k: v["values"] for k, v in fresh.ui.items()} == expected
    # the same with a cache shared across all examples (incremental re-runs of other graphs)
    shared = SHARED.run(d)
    assert {k: v["values"] for k, v in shared.ui.items()} == expected


@settings(max_examples=40, deadline=None)
@given(dags(), st.data())
def test_rerun_after_one_change_equals_fresh_run(d, data):
    ex = Executor(REG)
    ex.run(d)
    consts = [k for k, n in d["nodes"].items() if n["type"] == "Const"]
    k = data.draw(st.sampled_from(consts))
    d["nodes"][k]["inputs"]["value"] += data.draw(st.integers(1, 9))
    r = ex.run(d)
    assert {nid: v["values"] for nid, v in r.ui.items()} == naive(d)
    assert k not in r.plan.order or k in r.executed or k in r.cached


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)


@st.composite
def workflowish(draw):
    """Mostly-valid documents with random damage, and arbitrary JSON."""
    if draw(st.booleans()):
        return draw(json_values)
    nodes = draw(st.dictionaries(st.sampled_from(["1", "2", "3", ""]), st.fixed_dictionaries(
        {"type": st.sampled_from(["Const", "Add", "Sink", "Nope", 3])},
        optional={"inputs": st.dictionaries(st.sampled_from(["value", "a", "b", "x"]),
                                            json_values | st.builds(lambda s, o: {"from": [s, o]},
                                                                    st.sampled_from(["1", "2", "9"]),
                                                                    st.sampled_from(["value", "sum", 1])),
                                            max_size=3),
                  "mode": st.sampled_from(["normal", "muted", "bypass", "weird"]),
                  "type_version": json_values}), max_size=4))
    d = {"format": draw(st.sampled_from(["nodegen-workflow", "other"])),
         "version": draw(st.sampled_from([0, 1, 2, "1", None])), "nodes": nodes}
    if draw(st.booleans()):
        d["groups"] = draw(json_values)
    return d


@settings(max_examples=300, deadline=None)
@given(workflowish())
def test_loader_never_crashes(data):
    text = json.dumps(data)
    try:
        d = parse(json.loads(text))
    except WorkflowError:
        return
    p = plan(d, REG)  # validation never crashes either
    if p.ok:
        r = Executor(REG).run(d)
        assert r.status in ("ok", "failed")
