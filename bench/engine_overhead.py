"""Engine overhead per node: chains and wide graphs of trivial nodes, through the public API.

For 10, 100, 1,000 and 10,000 nodes: first run (a new engine: empty cache, nothing prepared), fully
cached re-run, and a re-run after the first node's input changed (everything downstream re-runs in
a chain; one branch in a wide graph). Each run is given a fresh copy of the document, as a client
that edits and re-sends it would. Two figures per case:

* ``Engine.run``: the public API (preparing the document: format check, migrations, model
  hashes; then validation, planning and execution). Target: <= 20 us/node, flat in size.
* ``Executor.run``: the kernel alone (validation, planning, execution), for reference.

Prints microseconds of process CPU time per node (best of REPEAT; wall time with --wall).

    python bench/engine_overhead.py [--repeat 3] [--sizes 10 100 1000 10000] [--wall]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodegen.kernel import types as T  # noqa: E402
from nodegen.kernel.cache import OutputCache  # noqa: E402
from nodegen.kernel.executor import Executor  # noqa: E402
from nodegen.kernel.node import Input, Output, node  # noqa: E402
from nodegen.kernel.registry import NodeRegistry  # noqa: E402
from nodegen.runtime.engine import Engine  # noqa: E402


@node("BConst", inputs=[Input.int("value", 0)], outputs=[Output("value", T.INT)])
def bconst(ctx, value):
    return value


@node("BInc", inputs=[Input.int("x", 0), Input.int("by", 1)], outputs=[Output("value", T.INT)])
def binc(ctx, x, by):
    return x + by


@node("BSink", output=True, inputs=[Input.link("value", T.INT)])
def bsink(ctx, value):
    return {}


def chain(n: int, seed: int = 0) -> dict:
    nodes = {"0": {"type": "BConst", "inputs": {"value": seed}}}
    for i in range(1, n - 1):
        nodes[str(i)] = {"type": "BInc", "inputs": {"x": {"from": [str(i - 1), "value"]}, "by": 1}}
    nodes[str(n - 1)] = {"type": "BSink", "inputs": {"value": {"from": [str(n - 2), "value"]}}}
    return {"format": "nodegen-workflow", "version": 1, "nodes": nodes}


def wide(n: int, seed: int = 0) -> dict:
    """n/2 independent Const -> Sink pairs."""
    nodes = {}
    for i in range(n // 2):
        nodes[f"c{i}"] = {"type": "BConst", "inputs": {"value": seed + i if i == 0 else i}}
        nodes[f"s{i}"] = {"type": "BSink", "inputs": {"value": {"from": [f"c{i}", "value"]}}}
    return {"format": "nodegen-workflow", "version": 1, "nodes": nodes}


def registry() -> NodeRegistry:
    reg = NodeRegistry()
    for nd in (bconst, binc, bsink):
        reg.register(nd, "bench")
    return reg


def measure(api: str, make, n: int, repeat: int, clock=time.process_time) -> tuple[float, float, float]:
    """Best per-node microseconds of (first, cached, changed) runs through ``api``."""
    reg = registry()
    best = [float("inf")] * 3
    docs = make(n, 0), make(n, 1)
    for _ in range(repeat):
        if api == "engine":
            engine = Engine(registry=reg, device="cpu", model_manager=object(),
                            cache_budgets={"cpu": 10**9})
            _ = engine.executor  # built once per engine (device, model manager), not per run
            run = engine.run
        else:
            run = Executor(reg, OutputCache({"cpu": 10**9})).run
        for k, d in enumerate((docs[0], docs[0], docs[1])):
            d = copy.deepcopy(d)  # a new document object each time, as a client sends it
            t = clock()
            r = run(d)
            dt = clock() - t
            assert r.ok, r.problems or r.failures
            best[k] = min(best[k], dt)
    return tuple(b / n * 1e6 for b in best)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    ap.add_argument("--wall", action="store_true", help="wall time instead of process CPU time")
    args = ap.parse_args()
    clock = time.perf_counter if args.wall else time.process_time
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {platform.python_version()} on {platform.machine()}, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"load average {load:.1f}; us/node of {'wall' if args.wall else 'CPU'} time, best of {args.repeat}")
    print(f"{'graph':<7}{'nodes':>7} | {'Engine.run: first':>18}{'cached':>8}{'changed':>9} |"
          f" {'Executor.run: first':>20}{'cached':>8}{'changed':>9}")
    for name, make in (("chain", chain), ("wide", wide)):
        for n in args.sizes:
            eng = measure("engine", make, n, args.repeat, clock)
            exe = measure("executor", make, n, args.repeat, clock)
            print(f"{name:<7}{n:>7} | {eng[0]:>18.1f}{eng[1]:>8.1f}{eng[2]:>9.1f} |"
                  f" {exe[0]:>20.1f}{exe[1]:>8.1f}{exe[2]:>9.1f}")


if __name__ == "__main__":
    main()
