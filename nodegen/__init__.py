"""nodegen: a node-graph engine for AI image generation.

The three-line Python API::

    import nodegen
    result = nodegen.run("graphs/txt2img.json", set={"Sampler.seed": 7})
    result.images[0].save("out.png")

For a long-lived session (incremental re-runs, events), use :class:`nodegen.engine.Engine`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from nodegen.workflow import Workflow, WorkflowError  # noqa: E402


def load(path) -> Workflow:
    """Load a workflow file (``.json``, or a PNG with an embedded workflow)."""
    return Workflow.load(path)


def run(workflow, set: dict | None = None, **engine_options):  # noqa: A002
    """Run a workflow (a path, a :class:`Workflow` or a dict) once and return the
    :class:`nodegen.executor.RunResult`. ``set`` maps ``"node.input"`` to values."""
    from nodegen.engine import Engine

    return Engine(**engine_options).run(workflow, set=set)


__all__ = ["Workflow", "WorkflowError", "load", "run", "__version__"]
