"""Validation of one node: every problem at once, each naming the node, the input and the fix.

:func:`check_node` runs the checks in order: the type is known, the saved version is not newer, each
given input is known and is a sound link or a valid value, and every required input is given. Each
input rule lives in one place: a literal's rules in :meth:`nodegen.kernel.node.InputSpec.check_value`, a
file's existence in the run environment; the executor re-checks linked values with the same method.
"""

from __future__ import annotations

import difflib
from typing import Any

from nodegen.kernel.jsondoc import shorten
from nodegen.kernel.node import InputSpec, NodeDef
from nodegen.kernel.problems import CODES, Problem, ValidationError, node_title  # noqa: F401
from nodegen.kernel.registry import NodeRegistry
from nodegen.kernel.types import compatible
from nodegen.kernel.workflow import is_link


def check_node(nid: str, n: dict, defs: dict, nodes: dict, registry: NodeRegistry, env: Any,
               severity: str = "error") -> list[Problem]:
    """Every problem of node ``nid`` (``defs`` maps node ids to their NodeDef or None)."""
    nd = defs[nid]
    if nd is None:
        return [Problem(nid, node_title(n, nd), None, "unknown_type", _unknown_type_message(n, registry),
                        severity)]
    found: list[tuple[str | None, str, str]] = []  # (input, code, message)
    if "type_version" in n:
        found += _check_version(n, nd)
    inputs: dict = n.get("inputs", {}) or {}
    # A bypassed node does not run: only its links matter (its outputs pass inputs through).
    bypassed = n.get("mode") == "bypass"
    for name, value in inputs.items():
        spec = nd.input(name)
        if spec is None:
            found.append((name, "unknown_input", _unknown_input_message(nd, name)))
        elif type(value) is dict and "from" in value:
            found += [(name, code, msg) for code, msg in _check_link(value, spec, nodes, defs)]
        elif not bypassed:
            found += [(name, code, msg) for code, msg in _check_literal(value, spec, env)]
    if not bypassed:
        found += _check_required(nd, inputs)
    if not found:
        return []
    title = node_title(n, nd)  # only a node with problems needs its title
    return [Problem(nid, title, name, code, msg, severity) for name, code, msg in found]


def _unknown_type_message(n: dict, registry: NodeRegistry) -> str:
    tname = n.get("type")
    close = registry.closest(shorten(str(tname), 200))
    hint = f" Did you mean {', '.join(close)}?" if close else " Install the plugin that provides it."
    failed = getattr(registry, "errors", None) or []
    if failed:  # the type may come from a plugin that did not load: say which, and why
        hint += " Plugins that failed to load: " + "; ".join(
            f"{e.source}: {shorten(e.message, 200)}" for e in failed[:5]) + ("; ..." if len(failed) > 5 else "")
    tname = shorten(str(tname))
    if n.get("missing"):
        return f"missing node type {tname!r} (kept from an imported workflow).{hint}"
    return f"unknown node type {tname!r}.{hint}"


def _check_version(n: dict, nd: NodeDef) -> list[tuple[str | None, str, str]]:
    tv = n.get("type_version", nd.version)
    if isinstance(tv, int) and tv > nd.version:
        return [(None, "newer_version", f"made with version {tv} of {nd.type}; this nodegen has version "
                 f"{nd.version}. Update nodegen (or the plugin that provides it).")]
    return []


def _unknown_input_message(nd: NodeDef, name: str) -> str:
    close = difflib.get_close_matches(str(name), nd.input_names, n=2)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else (
        f"; {nd.type} has inputs {', '.join(nd.input_names) or '(none)'}")
    return f"{nd.type} has no input {name!r}{hint}"


def _check_link(value: dict, spec: InputSpec, nodes: dict, defs: dict) -> list[tuple[str, str]]:
    """A link must be well formed, point at an existing, unmuted node's output of a compatible type."""
    if not is_link(value) or not all(isinstance(x, str) for x in value["from"]):
        return [("invalid_link", 'a link must be {"from": [node_id, output_name]} with two strings')]
    src_id, out_name = value["from"]
    src = nodes.get(src_id)
    if src is None:
        return [("missing_node", f"linked to node {src_id!r}, which does not exist; reconnect it")]
    src_def = defs[src_id]
    found = []
    if src.get("mode") == "muted":
        found.append(("muted_source", f"linked to node {src_id} ({node_title(src, src_def)}), which is "
                                      f"muted; unmute it or disconnect the input"))
    if src_def is None:
        return found  # its unknown type is reported on that node
    ospec = src_def.output_spec(out_name)
    if ospec is None:
        outs = ", ".join(src_def.output_names) or "(none)"
        found.append(("missing_output", f"node {src_id} ({node_title(src, src_def)}) has no output "
                                         f"{out_name!r}; its outputs are {outs}"))
    elif not compatible(ospec.type, spec.type):
        found.append(("type_mismatch", f"expects {spec.type.name} but is linked to {ospec.type.name} "
                                        f"output {out_name!r} of node {src_id} ({node_title(src, src_def)})"))
    return found


def _check_literal(value: Any, spec: InputSpec, env: Any) -> list[tuple[str, str]]:
    """A literal must suit a literal input, pass the input's own rules, and name a file that exists."""
    if not spec.is_literal:
        return [("wrong_type", f"needs a link from a {spec.type.name} output, not a value")]
    if value is None and spec.optional:
        return []
    bad = spec.check_value(value, env)
    if bad is not None:
        return [bad]
    message = spec.env_check(value, env) if spec.env_check is not None else None  # e.g. SaveImage's target
    if message:
        return [("bad_target", message)]
    if spec.widget == "file" and env is not None and (value or not spec.optional):
        try:
            found = env.resolve_file(spec.file_kind, value)
        except ValueError as e:  # there, but not a regular file (a device, FIFO or folder)
            return [("not_a_file", str(e))]
        if found is None:
            where = (env.describe_missing(spec.file_kind, value) if hasattr(env, "describe_missing")
                     else env.describe_files(spec.file_kind))
            return [("missing_file", f"file {value!r} not found ({where})")]
    return []


def _check_required(nd: NodeDef, inputs: dict) -> list[tuple[str | None, str, str]]:
    found: list[tuple[str | None, str, str]] = []
    for spec in nd.inputs:
        if spec.required and spec.name not in inputs:
            what = f"a link from a {spec.type.name} output" if not spec.is_literal else "a value"
            found.append((spec.name, "missing_input", f"required input {spec.name!r} is not set; give it {what}"))
    return found
