"""Engine overhead per node: chains and wide graphs of trivial nodes.

For 10, 100, 1,000 and 10,000 nodes: first run (empty cache), fully cached re-run, and a re-run
after the first node's input changed (everything downstream re-runs in a chain; one branch in a
wide graph). Prints microseconds per node (best of REPEAT). Target: < 50 us/node, flat in size.

    python bench/engine_overhead.py [--repeat 3] [--sizes 10 100 1000 10000]
"""

from __future__ import annotations

import argparse
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


def measure(make, n: int, repeat: int, clock=time.perf_counter) -> tuple[float, float, float]:
    reg = NodeRegistry()
    for nd in (bconst, binc, bsink):
        reg.register(nd, "bench")
    best = [float("inf")] * 3
    for _ in range(repeat):
        ex = Executor(reg, OutputCache({"cpu": 10**9}))
        d0, d1 = make(n, 0), make(n, 1)
        for k, d in enumerate((d0, d0, d1)):
            t = clock()
            r = ex.run(d)
            dt = clock() - t
            assert r.ok, r.problems or r.failures
            best[k] = min(best[k], dt)
    return tuple(b / n * 1e6 for b in best)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    args = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {time.strftime('%Y-%m-%d')}")
    print(f"{'graph':<7}{'nodes':>7} | {'us/node, wall: first':>21}{'cached':>8}{'changed':>9} |"
          f" {'cpu: first':>11}{'cached':>8}{'changed':>9}")
    for name, make in (("chain", chain), ("wide", wide)):
        for n in args.sizes:
            wall = measure(make, n, args.repeat)
            cpu = measure(make, n, args.repeat, time.process_time)
            print(f"{name:<7}{n:>7} | {wall[0]:>21.1f}{wall[1]:>8.1f}{wall[2]:>9.1f} |"
                  f" {cpu[0]:>11.1f}{cpu[1]:>8.1f}{cpu[2]:>9.1f}")


if __name__ == "__main__":
    main()
