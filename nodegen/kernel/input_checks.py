"""Checks of a literal input against the run environment, registered by the module that knows
what the input means (e.g. SaveImage's ``filename_prefix``: the output folder must be writable).
Validation runs them at planning time, so a run fails before it does any work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: ``check(value, env) -> message or None``
Check = Callable[[Any, Any], "str | None"]

_CHECKS: dict[tuple[str, str], Check] = {}


def register_check(node_type: str, input_name: str, check: Check) -> None:
    _CHECKS[(node_type, input_name)] = check


def run_check(node_type: str, input_name: str, value: Any, env: Any) -> str | None:
    check = _CHECKS.get((node_type, input_name))
    return check(value, env) if check is not None else None
