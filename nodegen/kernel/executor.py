"""The executor: runs the planned part of a workflow with the signature cache.

Signature of a node = hash(type, version, mode, its effective literal inputs, its fingerprint, and
for each linked input the signature of the upstream node and the output name). Node ids play no
part, so two identical nodes run once, and a copy of a graph re-uses the cache. A node whose
signature is cached does not run; a non-deterministic node always runs (its signature carries a
fresh nonce, so everything downstream runs too).

Events (see :mod:`nodegen.kernel.events`), with their ``data``:

* ``run_started``: ``nodes`` (count planned), ``targets``
* ``node_started``: ``type``, ``title``, ``reason`` (why it runs)
* ``node_cached``: ``type``, ``title``, ``ui``
* ``node_progress``: ``step``, ``total``, ``preview`` (optional image)
* ``node_finished``: ``type``, ``title``, ``seconds``, ``ui``, ``reason``
* ``node_failed``: ``type``, ``title``, ``error``, ``traceback``, ``inputs`` (summaries)
* ``node_skipped``: ``reason``
* ``run_finished``: ``status`` (ok / failed / cancelled / invalid), ``seconds``, ``executed``, ``cached``
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from nodegen.kernel.cache import OutputCache
from nodegen.kernel.context import Cancelled, CancelToken, RunContext
from nodegen.kernel.events import Event, EventBus
from nodegen.kernel.node import MISSING, NodeDef
from nodegen.kernel.plan import Plan, plan
from nodegen.kernel.problems import Problem, node_title
from nodegen.kernel.registry import NodeRegistry
from nodegen.kernel.types import compatible

_nonce = itertools.count()


@dataclass
class NodeFailure:
    node_id: str
    type: str
    title: str
    error: str
    traceback: str
    inputs: dict[str, str]

    def __str__(self) -> str:
        ins = ", ".join(f"{k}={v}" for k, v in self.inputs.items())
        return (f"node {self.node_id} ({self.title}, {self.type}) failed: {self.error}\n"
                f"  inputs: {ins or '(none)'}")


@dataclass
class RunResult:
    status: str
    plan: Plan | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    ui: dict[str, dict] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[NodeFailure] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def problems(self) -> list[Problem]:
        return self.plan.problems if self.plan else []

    @property
    def warnings(self) -> list[Problem]:
        return self.plan.warnings if self.plan else []

    def _ui_list(self, key: str) -> list:
        items: list = []
        targets = self.plan.targets if self.plan else list(self.ui)
        for nid in targets:
            items.extend(self.ui.get(nid, {}).get(key, []))
        return items

    @property
    def images(self) -> list:
        """PIL images shown or saved by the output nodes, in target order."""
        return self._ui_list("images")

    @property
    def paths(self) -> list[str]:
        """Files written by the output nodes."""
        return self._ui_list("paths")

    def output(self, node_id: str, name: str | None = None) -> Any:
        outs = self.outputs[node_id]
        return outs[name] if name is not None else next(iter(outs.values()))


def summarize(value: Any) -> str:
    """A short description of an input value for error reports (shapes and dtypes for tensors)."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        dev = getattr(value, "device", None)
        return f"{type(value).__name__}{list(shape)} {value.dtype}" + (f" on {dev}" if dev else "")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {summarize(v)}" for k, v in list(value.items())[:6]) + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(summarize(v) for v in value[:4])
        return f"{type(value).__name__}[{len(value)}]({inner}{', ...' if len(value) > 4 else ''})"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _literal_repr(value: Any) -> str:
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, sort_keys=True, default=str)
    return repr(value)


@dataclass
class _History:
    sig: str
    literals: dict[str, Any]
    fingerprint: Any
    upstream: dict[str, tuple[str, str]]  # input -> (src node id, src signature)


class Executor:
    """Runs workflows against one cache. One run at a time (runs are serialised)."""

    def __init__(self, registry: NodeRegistry, cache: OutputCache | None = None, *, env: Any = None,
                 device: Any = "cpu", models: Any = None, events: EventBus | None = None) -> None:
        self.registry = registry
        self.cache = cache if cache is not None else OutputCache()
        self.env = env
        self.device = device
        self.models = models
        self.events = events if events is not None else EventBus()
        self._history: dict[str, _History] = {}
        self._run_ids = itertools.count(1)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------
    def run(self, doc: dict, targets: list[str] | None = None, *, keep_going: bool = False,
            cancel: CancelToken | None = None) -> RunResult:
        with self._lock:
            # The cyclic GC's full collections scale with the heap and would make per-node
            # overhead grow with graph size; reference counting still frees values at once.
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                return self._run(doc, targets, keep_going, cancel or CancelToken())
            finally:
                if gc_was_enabled:
                    gc.enable()

    def _emit(self, run_id: int, kind: str, node_id: str | None = None, **data: Any) -> None:
        if self.events.active:
            self.events.emit(Event(kind, run_id, node_id, data))

    def _run(self, doc: dict, targets, keep_going: bool, cancel: CancelToken) -> RunResult:
        t0 = time.perf_counter()
        run_id = next(self._run_ids)
        p = plan(doc, self.registry, targets, self.env)
        result = RunResult("ok", p)
        if p.problems:
            result.status = "invalid"
            self._emit(run_id, "run_finished", status="invalid", seconds=0.0, executed=0, cached=0,
                       problems=[str(x) for x in p.problems])
            return result
        nodes = doc["nodes"]
        order = p.order
        target_set = set(p.targets)
        self._emit(run_id, "run_started", nodes=len(order), targets=list(p.targets))

        # consumers count, to release intermediate values early
        consumers: dict[str, int] = {}
        for nid in order:
            for v in nodes[nid].get("inputs", {}).values():
                if type(v) is dict and "from" in v:
                    src = v["from"][0]
                    consumers[src] = consumers.get(src, 0) + 1

        values: dict[str, dict[str, Any]] = {}
        sigs: dict[str, str] = {}
        bad: dict[str, str] = {}  # failed or skipped node -> reason
        registry = self.registry
        cache = self.cache
        try:
            for nid in order:
                cancel.check()
                n = nodes[nid]
                nd: NodeDef = registry[n["type"]]
                title = n.get("title") or nd.title
                inputs = n.get("inputs") or {}
                # upstream failures
                blocked = next((v["from"][0] for v in inputs.values()
                                if type(v) is dict and "from" in v and v["from"][0] in bad), None)
                if blocked is not None:
                    bad[nid] = f"upstream node {blocked} did not finish"
                    result.skipped.append(nid)
                    self._emit(run_id, "node_skipped", nid, reason=bad[nid])
                    continue
                kwargs, literals, upstream = self._gather(nd, inputs, values, sigs)
                self._release(inputs, consumers, values, target_set)
                mode = n.get("mode", "normal")
                if mode == "bypass":
                    values[nid], sigs[nid] = self._bypass(nd, inputs, kwargs, upstream)
                    result.cached.append(nid)
                    continue
                fp = None
                if nd.fingerprint is not None:
                    try:
                        fp = nd.fingerprint(dict(kwargs), self.env)
                    except Exception as e:  # noqa: BLE001
                        self._fail(run_id, result, bad, nid, nd, title, kwargs, e)
                        if not keep_going:
                            break
                        continue
                sig = self._signature(nd, literals, fp, upstream)
                sigs[nid] = sig
                entry = cache.get(sig) if nd.deterministic else None
                if entry is not None:
                    values[nid] = entry.outputs
                    result.cached.append(nid)
                    if entry.ui:
                        result.ui[nid] = entry.ui
                    self._history[nid] = _History(sig, literals, fp, upstream)
                    self._emit(run_id, "node_cached", nid, type=nd.type, title=title, ui=entry.ui)
                    continue
                reason = self._why(nid, nd, sig, literals, fp, upstream, nodes)
                result.reasons[nid] = reason
                self._emit(run_id, "node_started", nid, type=nd.type, title=title, reason=reason)
                ctx = RunContext(
                    node_id=nid, node_title=title, device=self.device, models=self.models,
                    paths=getattr(self.env, "paths", None),
                    output_dir=getattr(self.env, "output_dir", "output"),
                    input_dir=getattr(self.env, "input_dir", "input"),
                    temp_dir=getattr(self.env, "temp_dir", "temp"),
                    workflow=doc, cancel=cancel, _progress=self._progress_fn(run_id), env=self.env,
                )
                t = time.perf_counter()
                try:
                    outputs = nd.normalize_result(nd.run(ctx, **kwargs))
                except Cancelled:
                    raise
                except Exception as e:  # noqa: BLE001 - a node failure is reported, not raised
                    self._fail(run_id, result, bad, nid, nd, title, kwargs, e)
                    if not keep_going:
                        break
                    continue
                dt = time.perf_counter() - t
                values[nid] = outputs
                result.executed.append(nid)
                result.timings[nid] = dt
                if ctx.ui_data:
                    result.ui[nid] = ctx.ui_data
                if nd.deterministic:
                    cache.put(sig, outputs, ctx.ui_data)
                self._history[nid] = _History(sig, literals, fp, upstream)
                self._emit(run_id, "node_finished", nid, type=nd.type, title=title, seconds=dt,
                           ui=ctx.ui_data, reason=reason)
        except Cancelled:
            result.status = "cancelled"
        if result.status == "ok" and result.failures:
            result.status = "failed"
        for nid in p.targets:
            if nid in values:
                result.outputs[nid] = values[nid]
        result.seconds = time.perf_counter() - t0
        self._emit(run_id, "run_finished", status=result.status, seconds=result.seconds,
                   executed=len(result.executed), cached=len(result.cached))
        return result

    # ------------------------------------------------------------------------------------
    @staticmethod
    def _gather(nd: NodeDef, inputs: dict, values: dict, sigs: dict):
        kwargs: dict[str, Any] = {}
        literals: dict[str, Any] = {}
        upstream: dict[str, tuple[str, str]] = {}
        for spec in nd.inputs:
            name = spec.name
            v = inputs.get(name, MISSING)
            if type(v) is dict and "from" in v:
                src, out = v["from"]
                kwargs[name] = values[src][out]
                upstream[name] = (src, sigs[src] + "." + out)
            elif v is MISSING or (v is None and spec.optional):
                d = spec.default
                kwargs[name] = None if d is MISSING else d
                literals[name] = kwargs[name]
            else:
                if spec.widget in ("int", "seed") and isinstance(v, float):
                    v = int(v)
                kwargs[name] = v
                literals[name] = v
        return kwargs, literals, upstream

    @staticmethod
    def _release(inputs: dict, consumers: dict, values: dict, keep: set) -> None:
        for v in inputs.values():
            if type(v) is dict and "from" in v:
                src = v["from"][0]
                left = consumers[src] - 1
                consumers[src] = left
                if left == 0 and src not in keep:
                    values.pop(src, None)

    @staticmethod
    def _signature(nd: NodeDef, literals: dict, fp: Any, upstream: dict) -> str:
        parts = [nd.type, str(nd.version)]
        for k in sorted(literals):
            parts.append(f"{k}={_literal_repr(literals[k])}")
        for k in sorted(upstream):
            parts.append(f"{k}<{upstream[k][1]}")
        if fp is not None:
            parts.append(f"fp={_literal_repr(fp)}")
        if not nd.deterministic:
            parts.append(f"nonce={next(_nonce)}")
        return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()

    def _bypass(self, nd: NodeDef, inputs: dict, kwargs: dict, upstream: dict):
        """Outputs of a bypassed node: each output takes the linked input of the same name,
        else the first linked input of a compatible type, else None."""
        out: dict[str, Any] = {}
        parts = ["bypass", nd.type]
        used: set[str] = set()
        for ospec in nd.outputs:
            pick = None
            same = nd.input(ospec.name)
            if same is not None and ospec.name in upstream and compatible(same.type, ospec.type):
                pick = ospec.name
            else:
                pick = next((s.name for s in nd.inputs if s.name in upstream and s.name not in used
                             and compatible(s.type, ospec.type)), None)
            if pick is not None:
                used.add(pick)
                parts.append(f"{ospec.name}<{upstream[pick][1]}")
            out[ospec.name] = kwargs.get(pick) if pick is not None else None
        return out, hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()

    def _why(self, nid: str, nd: NodeDef, sig: str, literals: dict, fp: Any, upstream: dict,
             nodes: dict) -> str:
        if not nd.deterministic:
            return "not deterministic (always runs)"
        old = self._history.get(nid)
        if old is None:
            return "not in the cache (first run)"
        if old.sig == sig:
            return "its result was evicted from the cache"
        reasons = []
        if old.literals != literals:
            for k in sorted(literals.keys() | old.literals.keys()):
                a, b = old.literals.get(k, MISSING), literals.get(k, MISSING)
                if a is MISSING or b is MISSING or _literal_repr(a) != _literal_repr(b):
                    reasons.append(f"{k} changed ({_short(a)} -> {_short(b)})")
        if old.fingerprint != fp:
            reasons.append("its file changed")
        if old.upstream != upstream:
            for k in sorted(upstream.keys() | old.upstream.keys()):
                a, b = old.upstream.get(k), upstream.get(k)
                if a != b:
                    src = (b or a)[0]
                    n = nodes.get(src, {})
                    reasons.append(f"upstream {src} ({node_title(n, self.registry.get(n.get('type', '')))}) changed")
        return "; ".join(reasons) if reasons else "its type or version changed"

    def _progress_fn(self, run_id: int):
        def progress(node_id: str, step: int, total: int, preview: Any) -> None:
            self._emit(run_id, "node_progress", node_id, step=step, total=total, preview=preview)
        return progress

    def _fail(self, run_id: int, result: RunResult, bad: dict, nid: str, nd: NodeDef, title: str,
              kwargs: dict, e: Exception) -> None:
        failure = NodeFailure(nid, nd.type, title, f"{type(e).__name__}: {e}", traceback.format_exc(),
                              {k: summarize(v) for k, v in kwargs.items()})
        result.failures.append(failure)
        bad[nid] = failure.error
        self._emit(run_id, "node_failed", nid, type=nd.type, title=title, error=failure.error,
                   traceback=failure.traceback, inputs=failure.inputs)

    def forget(self) -> None:
        """Drop the run history (the cache itself is kept)."""
        self._history.clear()


def _short(v: Any) -> str:
    if v is MISSING:
        return "unset"
    text = repr(v)
    return text if len(text) <= 30 else text[:27] + "..."
