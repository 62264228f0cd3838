"""nodegen: a node-graph engine for AI image generation.

The public API (stable; deeper modules may move)::

    import nodegen
    result = nodegen.run("graphs/txt2img.json", set={"Sampler.seed": 7})
    result.images[0].save("out.png")

    engine = nodegen.Engine()                  # a long-lived session: incremental re-runs, events
    wf = nodegen.load("graphs/txt2img.json")   # nodegen JSON, ComfyUI JSON or a PNG with a workflow

    @nodegen.node("Twice", inputs=[nodegen.Input.int("x", 1)],
                  outputs=[nodegen.Output("x", nodegen.types.INT)])
    def twice(ctx, x):
        return 2 * x

    client = nodegen.Client("http://127.0.0.1:8765")   # the job server's client

Names are imported on first use (PEP 562), so ``import nodegen`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nodegen import _source_tree
from nodegen.kernel.version import __version__

_source_tree.install()

#: public name -> (module, attribute); attribute None means the module itself.
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "Engine": ("nodegen.runtime.engine", "Engine"),
    "RunResult": ("nodegen.kernel.executor", "RunResult"),
    "RunError": ("nodegen.kernel.executor", "RunError"),
    "ValidationError": ("nodegen.kernel.problems", "ValidationError"),
    "node": ("nodegen.kernel.node", "node"),
    "Input": ("nodegen.kernel.node", "Input"),
    "Output": ("nodegen.kernel.node", "Output"),
    "NodeDef": ("nodegen.kernel.node", "NodeDef"),
    "NodeRegistry": ("nodegen.kernel.registry", "NodeRegistry"),
    "SocketType": ("nodegen.kernel.types", "SocketType"),
    "types": ("nodegen.kernel.types", None),
    "Workflow": ("nodegen.kernel.workflow", "Workflow"),
    "WorkflowError": ("nodegen.kernel.workflow", "WorkflowError"),
    "CancelToken": ("nodegen.kernel.context", "CancelToken"),
    "open_any": ("nodegen.formats.open", "open_any"),
    "Client": ("nodegen.client", "Client"),
}

if TYPE_CHECKING:
    from nodegen import client as _client  # noqa: F401
    from nodegen.kernel import types  # noqa: F401
    from nodegen.kernel.context import CancelToken  # noqa: F401
    from nodegen.kernel.executor import RunError, RunResult  # noqa: F401
    from nodegen.kernel.node import Input, NodeDef, Output, node  # noqa: F401
    from nodegen.kernel.problems import ValidationError  # noqa: F401
    from nodegen.kernel.registry import NodeRegistry  # noqa: F401
    from nodegen.kernel.types import SocketType  # noqa: F401
    from nodegen.kernel.workflow import Workflow, WorkflowError  # noqa: F401
    from nodegen.runtime.engine import Engine  # noqa: F401


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'nodegen' has no attribute {name!r}") from None
    import importlib

    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def load(path: Any) -> Workflow:
    """Load a workflow: nodegen JSON, a ComfyUI workflow (either format) or a PNG that embeds one."""
    from nodegen.formats.open import open_any

    return open_any(path)


def run(workflow: Any, set: dict[str, Any] | None = None, *, check: bool = True,  # noqa: A002
        **engine_options: Any) -> RunResult:
    """Run a workflow (a path, a :class:`Workflow` or a dict) once and return its
    :class:`~nodegen.kernel.executor.RunResult`. ``set`` maps ``"node.input"`` to values.

    With ``check`` (the default) a run that is not ``ok`` raises: :class:`ValidationError` listing
    every problem of an invalid workflow, :class:`RunError` naming each failing node and its inputs;
    ``check=False`` returns the result as it is (``result.ok``, ``.problems``, ``.failures``)."""
    from nodegen.runtime.engine import Engine  # noqa: F401

    result = Engine(**engine_options).run(workflow, set=set)
    return result.check() if check else result


__all__ = ["__version__", "load", "run", *_EXPORTS]
