"""Helpers shared by the CLI commands: engine construction, workflow loading, --set parsing."""

from __future__ import annotations

import json
import sys
from typing import Any

from nodegen.cli import UsageError


def add_engine_args(p) -> None:
    p.add_argument("--models", action="append", default=[], metavar="DIR",
                   help="a models root (with checkpoints/, vae/, loras/, ...); repeatable; "
                        "also NODEGEN_MODELS and the config file")
    p.add_argument("--input", dest="input_dir", default="input", metavar="DIR",
                   help="folder of input images (default: ./input)")


def make_engine(args, **kw):
    from nodegen.runtime.engine import Engine

    return Engine(models=args.models or None, input_dir=getattr(args, "input_dir", "input"), **kw)


def load_workflow(engine, path: str):
    from nodegen.kernel.workflow import WorkflowError

    try:
        return engine.prepare(path)
    except WorkflowError as e:
        raise UsageError(str(e)) from e
    except ValueError as e:  # PNG without a workflow, migrations
        raise UsageError(str(e)) from e


def parse_value(raw: str, spec: Any) -> Any:
    """A --set value: text inputs take the raw text; others are parsed as JSON when possible."""
    widget = getattr(spec, "widget", None)
    if widget in ("string", "multiline", "file"):
        return raw
    if widget == "choice":
        choices = spec.choice_list() if not callable(spec.choices) else None
        if choices is None or any(isinstance(c, str) for c in choices):
            return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def apply_sets(engine, wf, sets: list[str]) -> None:
    for item in sets:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected NODE.INPUT=VALUE")
        key, raw = item.split("=", 1)
        if "." not in key:
            raise UsageError(f"--set {item!r}: expected NODE.INPUT=VALUE (NODE is an id or a unique title)")
        ref, name = key.rsplit(".", 1)
        try:
            nid = wf.resolve_node(ref)
        except KeyError as e:
            raise UsageError(f"--set {item!r}: {e.args[0]}") from e
        nd = engine.registry.get(wf.nodes[nid].get("type"))
        spec = nd.input(name) if nd else None
        if nd is not None and spec is None:
            raise UsageError(f"--set {item!r}: node {nid} ({nd.type}) has no input {name!r}; "
                             f"its inputs are {', '.join(nd.input_names)}")
        wf.set(nid, name, parse_value(raw, spec))


def print_problems(problems, stream=None, header: str = "") -> None:
    stream = stream or sys.stderr
    if header:
        print(header, file=stream)
    for p in problems:
        print(f"  - {p}", file=stream)
