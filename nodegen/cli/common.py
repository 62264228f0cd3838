"""Helpers shared by the CLI commands: engine construction, workflow loading, --set parsing."""

from __future__ import annotations

import sys
from typing import Any

from nodegen.cli import UsageError


def add_engine_args(p) -> None:
    p.add_argument("--models", action="append", default=[], metavar="DIR",
                   help="a models root (with checkpoints/, vae/, loras/, ...); repeatable; "
                        "also NODEGEN_MODELS and the config file")
    p.add_argument("--input", dest="input_dir", default="input", metavar="DIR",
                   help="folder of input images (default: ./input)")
    p.add_argument("--allow-any-path", action="store_true",
                   help="let LoadImage read images anywhere (default: only the input folder, the "
                        "workflow's folder and the config file's 'image_paths')")
    p.add_argument("--debug", action="store_true", help="print full tracebacks")


def make_engine(args, **kw):
    from nodegen.runtime.engine import Engine

    try:
        return Engine(models=args.models or None, input_dir=getattr(args, "input_dir", "input"),
                      allow_any_path=getattr(args, "allow_any_path", False), **kw)
    except ValueError as e:  # a bad config file, a bad device
        raise UsageError(str(e)) from e


def load_workflow(engine, path: str):
    from nodegen.kernel.workflow import WorkflowError

    for err in getattr(engine.registry, "errors", []):  # a plugin that did not load is named
        print(f"warning: {str(err)[:500]}", file=sys.stderr)
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
        _encodable(raw)
        return raw
    if widget == "choice":
        choices = spec.choice_list() if not callable(spec.choices) else None
        if choices is None or any(isinstance(c, str) for c in choices):
            _encodable(raw)
            return raw
    from nodegen.kernel.jsondoc import JsonDocError, check_text, loads

    try:
        check_text(raw, "--set value")
    except JsonDocError as e:
        raise UsageError(str(e)) from e
    try:
        return loads(raw)
    except JsonDocError as e:
        if "not valid JSON" in str(e):
            return raw
        raise UsageError(f"--set value: {e}") from e


def _encodable(raw: str) -> None:
    from nodegen.kernel.jsondoc import JsonDocError, check_text

    try:
        check_text(raw, "--set value")
    except JsonDocError as e:
        raise UsageError(str(e)) from e


def set_threads(value: int | None) -> None:
    """``--threads`` or NODEGEN_THREADS (checked: a whole number from 1 to 4x the CPU count), else
    the default policy of :mod:`nodegen.runtime.threads`."""
    from nodegen.runtime.threads import apply_threads

    try:
        apply_threads(value)
    except ValueError as e:
        raise UsageError(f"--threads / NODEGEN_THREADS: {e}") from e


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
