"""Executor and cache: incremental re-runs, eviction, cancellation, keep-going, failures."""

from __future__ import annotations

import pytest

from nodegen.kernel.cache import OutputCache
from nodegen.kernel.context import CancelToken
from nodegen.kernel.executor import Executor
from tests.support import testnodes as tn
from tests.support.testnodes import doc, ln


@pytest.fixture()
def ex():
    tn.RUNS.clear()
    return Executor(tn.registry())


def chain_doc(seed=1):
    return doc({
        "1": {"type": "Const", "inputs": {"value": seed}},
        "2": {"type": "Const", "inputs": {"value": 5}},
        "3": {"type": "Add", "inputs": {"a": ln("1", "value"), "b": ln("2", "value")}},
        "4": {"type": "Add", "inputs": {"a": ln("2", "value"), "b": 1}},
        "5": {"type": "Sink", "inputs": {"value": ln("3", "sum")}},
        "6": {"type": "Sink", "inputs": {"value": ln("4", "sum")}},
    })


def test_first_run_and_values(ex):
    r = ex.run(chain_doc())
    assert r.ok
    assert r.ui["5"]["values"] == [6] and r.ui["6"]["values"] == [6]
    assert sorted(r.executed) == ["1", "2", "3", "4", "5", "6"]


def test_identical_rerun_executes_nothing(ex):
    ex.run(chain_doc())
    tn.RUNS.clear()
    r = ex.run(chain_doc())
    assert r.executed == [] and sorted(r.cached) == ["1", "2", "3", "4", "5", "6"]
    assert sum(tn.RUNS.values()) == 0
    assert r.ui["5"]["values"] == [6]  # cached output nodes still report their results


def test_seed_change_reruns_only_downstream(ex):
    ex.run(chain_doc(1))
    tn.RUNS.clear()
    r = ex.run(chain_doc(2))
    assert sorted(r.executed) == ["1", "3", "5"]
    assert sorted(r.cached) == ["2", "4", "6"]
    assert r.reasons["1"] == "value changed (1 -> 2)"
    assert r.reasons["3"] == "upstream 1 (Const) changed"
    assert r.ui["5"]["values"] == [7]


def test_two_identical_nodes_run_once(ex):
    d = doc({
        "a": {"type": "Const", "inputs": {"value": 3}},
        "b": {"type": "Const", "inputs": {"value": 3}},
        "c": {"type": "Add", "inputs": {"a": ln("a", "value"), "b": ln("b", "value")}},
        "s": {"type": "Sink", "inputs": {"value": ln("c", "sum")}},
    })
    r = ex.run(d)
    assert tn.RUNS["Const"] == 1
    assert r.ui["s"]["values"] == [6]


def test_node_ids_play_no_part(ex):
    ex.run(chain_doc())
    tn.RUNS.clear()
    renamed = doc({f"n{k}": {**v, "inputs": {ik: (ln("n" + iv["from"][0], iv["from"][1])
                                                  if isinstance(iv, dict) else iv)
                                             for ik, iv in v["inputs"].items()}}
                   for k, v in chain_doc()["nodes"].items()})
    r = ex.run(renamed)
    assert r.executed == [] and sum(tn.RUNS.values()) == 0


def test_nondeterministic_always_runs_with_downstream(ex):
    d = doc({
        "r": {"type": "Rand"},
        "a": {"type": "Add", "inputs": {"a": ln("r", "value"), "b": 1}},
        "s": {"type": "Sink", "inputs": {"value": ln("a", "sum")}},
    })
    ex.run(d)
    r = ex.run(d)
    assert sorted(r.executed) == ["a", "r", "s"]
    assert r.reasons["r"].startswith("not deterministic")


def test_eviction_under_tiny_budget():
    cache = OutputCache({"cpu": 1000})
    ex = Executor(tn.registry(), cache)
    tn.RUNS.clear()
    d = doc({
        "t1": {"type": "Tensor", "inputs": {"n": 200, "fill": 1}},  # 800 bytes
        "t2": {"type": "Tensor", "inputs": {"n": 200, "fill": 2}},
        "s1": {"type": "Sink", "inputs": {"value": ln("t1", "tensor")}},
        "s2": {"type": "Sink", "inputs": {"value": ln("t2", "tensor")}},
    })
    r = ex.run(d)
    assert r.ok
    assert cache.usage["cpu"] <= 1000
    assert cache.evictions >= 1
    order = [n for n in r.executed if n.startswith("t")]
    first, last = order[0], order[1]
    tn.RUNS.clear()
    r2 = ex.run(d, ["s" + last[1]])  # the newest tensor is still cached
    assert tn.RUNS["Tensor"] == 0 and last in r2.cached
    r3 = ex.run(d, ["s" + first[1]])  # the oldest one was evicted and runs again
    assert tn.RUNS["Tensor"] == 1 and r3.reasons[first] == "its result was evicted from the cache"


class FakeGpuValue:
    """Stands in for a GPU tensor (no GPU here): reports its bytes by device, can move to host."""

    def __init__(self, n, device="cuda:0"):
        self.n, self.device = n, device

    def cache_nbytes(self):
        return {self.device: self.n}

    def cache_to_host(self):
        return FakeGpuValue(self.n, "cpu")


def test_cache_keeps_device_entries_and_spills_lru_to_host():
    cache = OutputCache({"cpu": 1000, "cuda": 500})
    cache.put("a", {"out": FakeGpuValue(300)})
    assert cache.usage == {"cuda:0": 300}
    cache.put("b", {"out": FakeGpuValue(300)})  # over the GPU budget: the LRU entry moves to host
    assert cache.usage == {"cuda:0": 300, "cpu": 300}
    assert cache.spills == 1 and cache.get("a").outputs["out"].device == "cpu"
    assert cache.get("b").outputs["out"].device == "cuda:0"
    cache.put("c", {"out": FakeGpuValue(300)})
    cache.put("d", {"out": FakeGpuValue(300)})
    cache.put("e", {"out": FakeGpuValue(300)})  # host full too: the LRU GPU entry is dropped
    assert cache.usage["cpu"] <= 1000 and cache.usage["cuda:0"] <= 500
    assert cache.evictions == 1 and "e" in cache and "d" not in cache


def test_cancellation_between_and_inside_nodes(ex):
    d = doc({
        "1": {"type": "Const", "inputs": {"value": 1}},
        "cancel-me": {"type": "Slow", "inputs": {"x": ln("1", "value"), "steps": 10}},
        "s": {"type": "Sink", "inputs": {"value": ln("cancel-me", "x")}},
    })
    r = ex.run(d)
    assert r.status == "cancelled"
    assert "cancel-me" not in r.executed and "s" not in r.executed
    # the cache holds only complete results: the next run continues from them
    tn.RUNS.clear()
    d["nodes"]["other"] = d["nodes"].pop("cancel-me")
    d["nodes"]["s"]["inputs"]["value"] = ln("other", "x")
    r2 = ex.run(d)
    assert r2.ok and "1" in r2.cached and tn.RUNS["Const"] == 0


def test_cancel_token_before_run(ex):
    tok = CancelToken()
    tok.cancel()
    r = ex.run(chain_doc(), cancel=tok)
    assert r.status == "cancelled" and r.executed == []


def test_failure_reports_node_inputs_and_traceback(ex):
    d = doc({
        "1": {"type": "Const", "inputs": {"value": 4}},
        "f": {"type": "Fail", "title": "Broken", "inputs": {"x": ln("1", "value")}},
        "s": {"type": "Sink", "inputs": {"value": ln("f", "x")}},
    })
    r = ex.run(d)
    assert r.status == "failed"
    (f,) = r.failures
    assert (f.node_id, f.type, f.title) == ("f", "Fail", "Broken")
    assert f.inputs == {"x": "4"}
    assert "RuntimeError: boom" in f.error and "raise RuntimeError" in f.traceback


def test_failure_summarises_tensor_inputs():
    import torch

    from nodegen.kernel.executor import summarize

    assert summarize(torch.zeros(2, 3)) == "Tensor[2, 3] torch.float32 on cpu"


def test_keep_going_finishes_independent_branches(ex):
    d = doc({
        "f": {"type": "Fail"},
        "s1": {"type": "Sink", "inputs": {"value": ln("f", "x")}},
        "1": {"type": "Const", "inputs": {"value": 9}},
        "s2": {"type": "Sink", "inputs": {"value": ln("1", "value")}},
    })
    r = ex.run(d)
    assert r.status == "failed" and "s2" not in r.executed or "1" not in r.executed
    tn.RUNS.clear()
    ex2 = Executor(tn.registry())
    r = ex2.run(d, keep_going=True)
    assert r.status == "failed"
    assert "s2" in r.executed and r.ui["s2"]["values"] == [9]
    assert "s1" in r.skipped


def test_failure_leaves_complete_results_cached(ex):
    d = doc({
        "1": {"type": "Const", "inputs": {"value": 2}},
        "f": {"type": "Fail", "inputs": {"x": ln("1", "value")}},
        "s": {"type": "Sink", "inputs": {"value": ln("f", "x")}},
    })
    ex.run(d)
    d["nodes"]["f"] = {"type": "Add", "inputs": {"a": ln("1", "value")}}
    d["nodes"]["s"]["inputs"]["value"] = ln("f", "sum")
    tn.RUNS.clear()
    r = ex.run(d)
    assert r.ok and "1" in r.cached and r.ui["s"]["values"] == [2]


def test_targets_run_only_what_they_need(ex):
    r = ex.run(chain_doc(), ["6"])
    assert sorted(r.executed) == ["2", "4", "6"]


def test_events_in_order(ex):
    seen = []
    ex.events.subscribe(lambda e: seen.append((e.kind, e.node_id)))
    ex.run(chain_doc())
    kinds = [k for k, _ in seen]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("node_started") == 6 and kinds.count("node_finished") == 6
    ex.run(chain_doc())
    assert [k for k, _ in seen].count("node_cached") == 6


def test_progress_events(ex):
    seen = []
    ex.events.subscribe(lambda e: seen.append(e) if e.kind == "node_progress" else None)
    d = doc({"1": {"type": "Const", "inputs": {"value": 1}},
             "p": {"type": "Slow", "inputs": {"x": ln("1", "value"), "steps": 4}},
             "s": {"type": "Sink", "inputs": {"value": ln("p", "x")}}})
    ex.run(d)
    assert [(e.data["step"], e.data["total"]) for e in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_bypass_passes_matching_inputs_through(ex):
    d = doc({
        "1": {"type": "Const", "inputs": {"value": 3}},
        "2": {"type": "Const", "inputs": {"value": 4}},
        "p": {"type": "Pair", "mode": "bypass", "inputs": {"a": ln("1", "value"), "b": ln("2", "value")}},
        "s1": {"type": "Sink", "inputs": {"value": ln("p", "a")}},
        "s2": {"type": "Sink", "inputs": {"value": ln("p", "b")}},
    })
    r = ex.run(d)
    assert r.ok and r.ui["s1"]["values"] == [3] and r.ui["s2"]["values"] == [4]
    d["nodes"]["p"]["mode"] = "normal"
    r = ex.run(d)
    assert r.ui["s1"]["values"] == [30] and r.ui["s2"]["values"] == [40]


def test_muted_output_node_does_not_run(ex):
    d = chain_doc()
    d["nodes"]["6"]["mode"] = "muted"
    r = ex.run(d)
    assert "6" not in r.executed and "4" not in r.executed


def test_int_output_feeds_float_input(ex):
    d = doc({"1": {"type": "Const", "inputs": {"value": 3}},
             "m": {"type": "Mul", "inputs": {"a": ln("1", "value"), "b": 2.5}},
             "s": {"type": "Sink", "inputs": {"value": ln("m", "product")}}})
    r = ex.run(d)
    assert r.ok and r.ui["s"]["values"] == [7.5]


def test_bypassed_node_values_are_not_checked(ex):
    """A bypassed node does not run, so its own literal values (here out of range) do not block."""
    d = doc({"1": {"type": "Const", "inputs": {"value": 3}},
             "p": {"type": "Slow", "mode": "bypass", "inputs": {"x": ln("1", "value"), "steps": -4}},
             "s": {"type": "Sink", "inputs": {"value": ln("p", "x")}}})
    r = ex.run(d)
    assert r.ok and r.ui["s"]["values"] == [3] and tn.RUNS["Slow"] == 0
    d["nodes"]["p"]["mode"] = "normal"
    assert [p.code for p in ex.run(d).problems] == ["out_of_range"]


def test_context_wants_preview_only_while_someone_listens():
    """Nodes build progress previews (a cost on every sampling step) only for a listener."""
    from nodegen.kernel import types as T
    from nodegen.kernel.node import Input, Output, node

    seen: list[bool] = []

    @node("PreviewProbe", category="test", output=True, inputs=[Input.int("value", 0)], outputs=[Output("value", T.INT)])
    def probe(ctx, value):
        seen.append(ctx.wants_preview)
        return value

    reg = tn.registry()
    reg.register(probe)
    ex = Executor(reg)
    ex.run(doc({"p": {"type": "PreviewProbe", "inputs": {"value": 1}}}))
    unsubscribe = ex.events.subscribe(lambda e: None)
    ex.run(doc({"p": {"type": "PreviewProbe", "inputs": {"value": 2}}}))
    unsubscribe()
    ex.run(doc({"p": {"type": "PreviewProbe", "inputs": {"value": 3}}}))
    # a listener that drops previews (the job server, a progress bar) does not ask for them ...
    blind = ex.events.subscribe(lambda e: None, previews=False)
    ex.run(doc({"p": {"type": "PreviewProbe", "inputs": {"value": 4}}}))
    # ... while one that shows them still gets them, with the blind one beside it
    shows = ex.events.subscribe(lambda e: None)
    ex.run(doc({"p": {"type": "PreviewProbe", "inputs": {"value": 5}}}))
    shows()
    ex.run(doc({"p": {"type": "PreviewProbe", "inputs": {"value": 6}}}))
    blind()
    assert seen == [False, True, False, False, True, False]
    assert not ex.events.active


def test_a_run_that_leaves_many_objects_is_followed_by_a_collection(monkeypatch):
    """A model load leaves hundreds of thousands of objects for the cyclic GC: collected right
    after that run, not promoted piecemeal (and slowly) during the runs that follow."""
    import gc

    from nodegen.kernel import executor as X
    from nodegen.kernel import types as T
    from nodegen.kernel.node import Input, Output, node

    kept: list = []

    @node("Hoard", category="test", output=True, inputs=[Input.int("count", 0)], outputs=[Output("value", T.INT)])
    def hoard(ctx, count):
        kept.extend({"i": i} for i in range(count))  # tracked objects that outlive the run
        return count

    reg = tn.registry()
    reg.register(hoard)
    ex = Executor(reg)
    monkeypatch.setattr(X, "BIG_RUN_OBJECTS", 20_000)
    collections: list[int] = []

    def count(phase, info):
        if phase == "stop":
            collections.append(info["generation"])
    gc.callbacks.append(count)
    try:
        ex.run(doc({"h": {"type": "Hoard", "inputs": {"count": 30_000}}}))
        assert 2 in collections  # a full collection ended the big run
        assert gc.get_count()[0] < 1_000
        collections.clear()
        ex.run(doc({"h": {"type": "Hoard", "inputs": {"count": 500}}}))
        assert 2 not in collections  # a small run leaves the GC to its own schedule
    finally:
        gc.callbacks.remove(count)
        assert gc.isenabled()
