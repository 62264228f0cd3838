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
from nodegen.kernel.problems import Problem, ValidationError, node_title
from nodegen.kernel.registry import NodeRegistry
from nodegen.kernel.types import compatible
from nodegen.kernel.values import check_run_inputs

_nonce = itertools.count()
#: A run that leaves more new objects than this for the cyclic GC (a model load: hundreds of
#: thousands) is followed by a full collection at once, so the runs after it do not pay for
#: promoting them through the generations (pauses of 0.1-0.4 s, measured, in later runs).
BIG_RUN_OBJECTS = 50_000


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


class RunError(RuntimeError):
    """A run that did not finish ``ok`` (a node failed, or it was cancelled); ``result`` holds the
    rest (what ran, the failures with their inputs)."""

    def __init__(self, result: RunResult):
        self.result = result
        failures = "\n".join(str(f) for f in result.failures)
        super().__init__(f"the run {result.status}" + (f":\n{failures}" if failures else ""))


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

    def check(self) -> RunResult:
        """This result if it is ``ok``; else raise: :class:`ValidationError` (every problem) for an
        invalid workflow, :class:`RunError` (each failing node with its inputs) otherwise."""
        if self.status == "invalid":
            raise ValidationError(self.problems)
        if self.status != "ok":
            raise RunError(self)
        return self

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


class _Run:
    """The state of one run: its plan and result, the values and signatures so far, the nodes that
    failed or were skipped (``bad``), and how many planned consumers each value still has."""

    def __init__(self, run_id: int, doc: dict, p: Plan, keep_going: bool, cancel: CancelToken) -> None:
        self.id = run_id
        self.doc = doc
        self.nodes: dict[str, dict] = doc.get("nodes", {})
        self.plan = p
        self.result = RunResult("ok", p)
        self.keep_going = keep_going
        self.cancel = cancel
        self.keep = set(p.targets)
        self.values: dict[str, dict[str, Any]] = {}
        self.sigs: dict[str, str] = {}
        self.bad: dict[str, str] = {}
        self.consumers: dict[str, int] = {}
        for nid in p.order:
            for v in self.nodes[nid].get("inputs", {}).values():
                if type(v) is dict and isinstance(v.get("from"), list) and v["from"]:  # malformed: refused by plan
                    src = v["from"][0]
                    self.consumers[src] = self.consumers.get(src, 0) + 1


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
                    if gc.get_count()[0] > BIG_RUN_OBJECTS:
                        gc.collect()

    def _emit(self, run_id: int, kind: str, node_id: str | None = None, **data: Any) -> None:
        if self.events.active:
            self.events.emit(Event(kind, run_id, node_id, data))

    def _run(self, doc: dict, targets, keep_going: bool, cancel: CancelToken) -> RunResult:
        """Plan, then run each planned node in order (cache, execute, or skip), then report."""
        t0 = time.perf_counter()
        # keep_going also runs the outputs whose part of the graph is valid (plan.skipped: the rest)
        planned = plan(doc, self.registry, targets, self.env, drop_invalid=keep_going)
        run = _Run(next(self._run_ids), doc, planned, keep_going, cancel)
        if run.plan.problems:
            return self._refuse(run)
        self._emit(run.id, "run_started", nodes=len(run.plan.order), targets=list(run.plan.targets),
                   skipped_targets=list(run.plan.skipped))
        try:
            for nid in run.plan.order:
                cancel.check()
                if not self._step(run, nid) and not keep_going:
                    break
        except Cancelled:
            run.result.status = "cancelled"
        return self._finish(run, t0)

    def _refuse(self, run: _Run) -> RunResult:
        run.result.status = "invalid"
        self._emit(run.id, "run_finished", status="invalid", seconds=0.0, executed=0, cached=0,
                   problems=[str(x) for x in run.plan.problems])
        return run.result

    def _step(self, run: _Run, nid: str) -> bool:
        """One node: skipped (upstream failed), passed through (bypass), served from the cache, or
        run. False when it failed."""
        n = run.nodes[nid]
        nd: NodeDef = self.registry[n["type"]]
        title = n.get("title") or nd.title
        inputs = n.get("inputs") or {}
        blocked = next((v["from"][0] for v in inputs.values()
                        if type(v) is dict and "from" in v and v["from"][0] in run.bad), None)
        if blocked is not None:
            run.bad[nid] = f"upstream node {blocked} did not finish"
            run.result.skipped.append(nid)
            self._emit(run.id, "node_skipped", nid, reason=run.bad[nid])
            return True
        kwargs, literals, upstream = self._gather(nd, inputs, run.values, run.sigs)
        self._release(inputs, run.consumers, run.values, run.keep)
        if n.get("mode", "normal") == "bypass":
            run.values[nid], run.sigs[nid] = self._bypass(nd, inputs, kwargs, upstream)
            run.result.cached.append(nid)
            return True
        try:
            fp = nd.fingerprint(dict(kwargs), self.env) if nd.fingerprint is not None else None
        except Exception as e:  # noqa: BLE001 - a node failure is reported, not raised
            self._fail(run, nid, nd, title, kwargs, e)
            return False
        sig = run.sigs[nid] = self._signature(nd, literals, fp, upstream)
        history = _History(sig, literals, fp, upstream)
        if nd.deterministic and self._serve_cached(run, nid, nd, title, sig):
            self._history[nid] = history
            return True
        return self._execute(run, nid, nd, title, kwargs, history)

    def _serve_cached(self, run: _Run, nid: str, nd: NodeDef, title: str, sig: str) -> bool:
        entry = self.cache.get(sig)
        if entry is None:
            return False
        run.values[nid] = entry.outputs
        run.result.cached.append(nid)
        if entry.ui:
            run.result.ui[nid] = entry.ui
        self._emit(run.id, "node_cached", nid, type=nd.type, title=title, ui=entry.ui)
        return True

    def _execute(self, run: _Run, nid: str, nd: NodeDef, title: str, kwargs: dict,
                 history: _History) -> bool:
        reason = self._why(nid, nd, history, run.nodes)
        run.result.reasons[nid] = reason
        self._emit(run.id, "node_started", nid, type=nd.type, title=title, reason=reason)
        ctx = self._context(run, nid, title)
        t = time.perf_counter()
        try:
            check_run_inputs(nd, kwargs, history.upstream)
            outputs = nd.normalize_result(nd.run(ctx, **kwargs))
        except Cancelled:
            raise
        except Exception as e:  # noqa: BLE001 - a node failure is reported, not raised
            self._fail(run, nid, nd, title, kwargs, e)
            return False
        dt = time.perf_counter() - t
        run.values[nid] = outputs
        run.result.executed.append(nid)
        run.result.timings[nid] = dt
        if ctx.ui_data:
            run.result.ui[nid] = ctx.ui_data
        if nd.deterministic:
            self.cache.put(history.sig, outputs, ctx.ui_data)
        self._history[nid] = history
        self._emit(run.id, "node_finished", nid, type=nd.type, title=title, seconds=dt,
                   ui=ctx.ui_data, reason=reason)
        return True

    def _context(self, run: _Run, nid: str, title: str) -> RunContext:
        env = self.env
        return RunContext(
            node_id=nid, node_title=title, device=self.device, models=self.models,
            paths=getattr(env, "paths", None),
            output_dir=getattr(env, "output_dir", "output"),
            input_dir=getattr(env, "input_dir", "input"),
            temp_dir=getattr(env, "temp_dir", "temp"),
            workflow=run.doc, cancel=run.cancel, _progress=self._progress_fn(run.id), env=env,
            _listening=self._wants_previews,
        )

    def _wants_previews(self) -> bool:
        return self.events.wants_previews

    def _finish(self, run: _Run, t0: float) -> RunResult:
        result = run.result
        if result.status == "ok" and (result.failures or run.plan.skipped):
            result.status = "failed"
        for nid in run.plan.targets:
            if nid in run.values:
                result.outputs[nid] = run.values[nid]
        result.seconds = time.perf_counter() - t0
        self._emit(run.id, "run_finished", status=result.status, seconds=result.seconds,
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

    def _why(self, nid: str, nd: NodeDef, now: _History, nodes: dict) -> str:
        """Why a node runs: what changed since its last run, in words."""
        sig, literals, fp, upstream = now.sig, now.literals, now.fingerprint, now.upstream
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
                    src = (b or a or ("?", ""))[0]
                    n = nodes.get(src, {})
                    reasons.append(f"upstream {src} ({node_title(n, self.registry.get(n.get('type', '')))}) changed")
        return "; ".join(reasons) if reasons else "its type or version changed"

    def _progress_fn(self, run_id: int):
        def progress(node_id: str, step: int, total: int, preview: Any) -> None:
            self._emit(run_id, "node_progress", node_id, step=step, total=total, preview=preview)
        return progress

    def _fail(self, run: _Run, nid: str, nd: NodeDef, title: str, kwargs: dict, e: Exception) -> None:
        failure = NodeFailure(nid, nd.type, title, f"{type(e).__name__}: {e}", traceback.format_exc(),
                              {k: summarize(v) for k, v in kwargs.items()})
        run.result.failures.append(failure)
        run.bad[nid] = failure.error
        self._emit(run.id, "node_failed", nid, type=nd.type, title=title, error=failure.error,
                   traceback=failure.traceback, inputs=failure.inputs)

    def forget(self) -> None:
        """Drop the run history (the cache itself is kept)."""
        self._history.clear()


def _short(v: Any) -> str:
    if v is MISSING:
        return "unset"
    text = repr(v)
    return text if len(text) <= 30 else text[:27] + "..."
