"""The jobs of a sweep, in an order that keeps the cache useful.

Each swept input belongs to a node; the nearer that node is to the outputs (the later it comes in
the run order), the faster its value varies. A change of seed then re-runs only the sampler and
what follows it, while a change of prompt (far from the outputs) happens as rarely as possible.
With ``zip`` the value lists are paired instead of combined.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class PlanError(ValueError):
    pass


@dataclass(frozen=True)
class Axis:
    key: str  # NODE.INPUT as typed
    node_id: str
    input: str
    values: tuple  # typed values
    position: int  # the node's place in the run order


@dataclass
class Job:
    index: int
    values: dict[str, Any]  # key -> typed value

    @property
    def folder(self) -> str:
        """The job's folder name: its place and a hash of its values (a different sweep in the same
        output folder never takes a finished job of another for its own)."""
        digest = hashlib.sha1(json.dumps(self.values, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.index:05d}-{digest[:10]}"


def run_order(doc: dict) -> list[str]:
    """Node ids in topological order (ties by id), from the document's links."""
    import networkx as nx

    g = nx.DiGraph()
    for nid, n in doc.get("nodes", {}).items():
        g.add_node(nid)
        for v in (n.get("inputs") or {}).values():
            if type(v) is dict and "from" in v:
                g.add_edge(str(v["from"][0]), nid)
    return list(nx.lexicographical_topological_sort(g))


def cache_order(axes: list[Axis]) -> list[Axis]:
    """Slowest-varying first: farthest from the outputs first (stable for ties)."""
    return sorted(axes, key=lambda a: a.position)


def expand_jobs(axes: list[Axis], zipped: bool = False) -> list[Job]:
    if not axes:
        raise PlanError("nothing to sweep: give at least one --over NODE.INPUT=SPEC")
    if zipped:
        lengths = {a.key: len(a.values) for a in axes}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise PlanError(f"--zip pairs the lists, so they must be equally long ({shown})")
        combos: Iterable[tuple] = zip(*(a.values for a in axes), strict=True)
        ordered = axes
    else:
        ordered = cache_order(axes)
        combos = itertools.product(*(a.values for a in ordered))
    return [Job(i, {a.key: v for a, v in zip(ordered, combo, strict=True)}) for i, combo in enumerate(combos)]


def chunks(jobs: list, workers: int) -> list[list]:
    """Runs of consecutive jobs (so each worker's cache stays warm), about four per worker."""
    if not jobs:
        return []
    size = max(1, -(-len(jobs) // max(1, workers * 4)))
    return [jobs[i:i + size] for i in range(0, len(jobs), size)]
