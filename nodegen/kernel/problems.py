"""Problems: what validation and runs report, each naming the node, its title and the input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodegen.kernel.node import NodeDef

#: Every problem code validation produces.
CODES = (
    "unknown_type", "newer_version", "unknown_input", "missing_input", "missing_node",
    "missing_output", "muted_source", "type_mismatch", "out_of_range", "wrong_type",
    "invalid_choice", "cycle", "missing_file", "unknown_target", "no_outputs", "invalid_link",
    "not_a_file", "bad_target", "empty_workflow",
)

#: Longest node title shown in a message (a 10 MB title must not flood the terminal).
TITLE_MAX = 80


@dataclass(frozen=True)
class Problem:
    """One problem: where (node id, title, input), what (a code from :data:`CODES`) and the fix."""

    node_id: str | None
    node_title: str | None
    input: str | None
    code: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = []
        if self.node_id is not None:
            label = f"node {self.node_id}"
            if self.node_title:
                label += f" ({self.node_title})"
            where.append(label)
        if self.input:
            where.append(f"input '{self.input}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message} [{self.code}]" if prefix else f"{self.message} [{self.code}]"

    def to_json(self) -> dict:
        return {"node_id": self.node_id, "node_title": self.node_title, "input": self.input,
                "code": self.code, "message": self.message, "severity": self.severity}


class ValidationError(Exception):
    """Raised where a workflow must be valid to go on; ``problems`` lists them all."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("the workflow is invalid:\n" + "\n".join(f"  - {p}" for p in problems))


def node_title(n: dict, nd: NodeDef | None) -> str:
    """The name a user sees for a node: its own title, else its type's title."""
    title = n.get("title") or (nd.title if nd else n.get("type", "?"))
    title = title if isinstance(title, str) else repr(title)
    return title if len(title) <= TITLE_MAX else f"{title[:TITLE_MAX]}... ({len(title)} characters)"
