"""Run-time checks of the values that arrive over links, before a node runs.

Validation checks literals before a run; a linked value exists only once its upstream node has run,
so its rules are checked here, in one place, for every node (:func:`check_run_inputs`): the value's
layout (the socket type's ``check``), then the input's own range and the size limits
(:mod:`nodegen.kernel.limits`). A failure names the input; the executor adds the node.
"""

from __future__ import annotations

from typing import Any

from nodegen.kernel.limits import check_inputs
from nodegen.kernel.node import NodeDef


class InputValueError(ValueError):
    """A linked value breaks its input's rules; ``input`` names the input."""

    def __init__(self, input_name: str, message: str) -> None:
        self.input = input_name
        super().__init__(f"input '{input_name}' {message}")


def check_linked_values(nd: NodeDef, kwargs: dict[str, Any], linked: dict[str, Any]) -> None:
    """Raise :class:`InputValueError` for the first linked input whose value breaks its type's layout."""
    for name in linked:
        spec = nd.input(name)
        if spec is None or spec.type.check is None:
            continue
        check = spec.type.check
        value = kwargs.get(name)
        if value is None and spec.optional:
            continue
        problem = check(value)
        if problem is not None:
            raise InputValueError(name, problem)


def check_run_inputs(nd: NodeDef, kwargs: dict[str, Any], linked: dict[str, Any]) -> None:
    """Every run-time rule of a node's inputs, before it runs: linked values' layouts, then the
    ranges of linked values, text length and the memory the work asks for."""
    check_linked_values(nd, kwargs, linked)
    check_inputs(nd, kwargs, linked)
