"""Run-time checks of the values that arrive over links, before a node runs.

Validation checks literals before a run; a linked value exists only once its upstream node has run,
so its rules are checked here, in one place, for every node: the value's layout (the socket type's
``check``). A failure names the input; the executor adds the node.
"""

from __future__ import annotations

from typing import Any

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
