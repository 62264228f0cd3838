"""The axes of a sweep: each ``NODE.INPUT=SPEC`` item resolved to a node input of the workflow,
its values expanded (:mod:`nodegen.runtime.sweep.specs`), typed for the input and checked against
its range and choices. ``random:N`` values drawn by an earlier run of the same sweep are taken
from the manifest, so a resumed sweep runs the same seeds.
"""

from __future__ import annotations

from typing import Any

from nodegen.kernel.problems import node_title
from nodegen.runtime.overrides import OverrideError, parse_text, resolve
from nodegen.runtime.sweep.manifest import Manifest
from nodegen.runtime.sweep.plan import Axis, run_order
from nodegen.runtime.sweep.specs import SpecError, expand, parse_over


class SweepError(ValueError):
    """A sweep that cannot start (bad spec, invalid graph): a usage error."""


def make_axes(engine: Any, wf: Any, overs: list[str], manifest: Manifest,
              graph_key: str) -> tuple[list[Axis], list[dict]]:
    """The axes of ``overs`` in workflow ``wf``, and what the manifest records of each
    (``{"key", "spec", "values"}``). Raises :class:`SweepError` naming the item at fault."""
    order = {nid: i for i, nid in enumerate(run_order(wf.data))}
    axes: list[Axis] = []
    records: list[dict] = []
    seen: dict[tuple[str, str], str] = {}
    for item in overs:
        try:
            key, spec = parse_over(item)
            target = resolve(engine.registry, wf, key)
        except (SpecError, OverrideError) as e:
            raise SweepError(f"--over {item!r}: {str(e).split(': ', 1)[-1]}") from e
        if (target.node_id, target.input) in seen:
            raise SweepError(f"--over {item!r}: {seen[(target.node_id, target.input)]} already sweeps this input")
        seen[(target.node_id, target.input)] = key
        recorded = manifest.recorded_values(graph_key, key, spec) if spec.strip().startswith("random:") else None
        try:
            texts = recorded if recorded is not None else expand(spec)
        except SpecError as e:
            raise SweepError(f"--over {item!r}: {e}") from e
        values = [parse_text(str(t), target.spec) for t in texts]
        if target.spec is not None:
            for v in values:
                bad = target.spec.check_value(v, engine.env)
                if bad is not None:
                    node = wf.nodes[target.node_id]
                    name = node_title(node, engine.registry.get(node.get("type")))
                    raise SweepError(f"--over {item!r}: node {target.node_id} ({name}), input {target.input!r}: "
                                     f"{bad[1]}")
        axes.append(Axis(key, target.node_id, target.input, tuple(values), order.get(target.node_id, 0)))
        records.append({"key": key, "spec": spec, "values": [str(t) for t in texts]})
    return axes, records
