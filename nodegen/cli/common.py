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
    """A --set value (see :func:`nodegen.runtime.overrides.parse_text`)."""
    from nodegen.runtime.overrides import parse_text

    try:
        return parse_text(raw, spec, "--set value")
    except ValueError as e:
        raise UsageError(str(e)) from e


def check_threads(value: int | None) -> None:
    """``--threads`` or NODEGEN_THREADS checked (a whole number from 1 to 4x the CPU count) without
    applying it: a usage error now, torch imported later (``serve``)."""
    from nodegen.runtime.threads import requested_threads

    try:
        requested_threads(value)
    except ValueError as e:
        raise UsageError(f"--threads / NODEGEN_THREADS: {e}") from e


def set_threads(value: int | None) -> None:
    """``--threads`` or NODEGEN_THREADS (see :func:`check_threads`), else the default policy of
    :mod:`nodegen.runtime.threads`."""
    from nodegen.runtime.threads import apply_threads

    check_threads(value)
    apply_threads(value)


def apply_sets(engine, wf, sets: list[str]) -> None:
    """Apply ``--set NODE.INPUT=VALUE`` items (``NODE.INPUT`` resolved by :mod:`nodegen.runtime.overrides`)."""
    from nodegen.runtime.overrides import OverrideError, resolve, split_assignment

    for item in sets:
        try:
            key, raw = split_assignment(item)
            target = resolve(engine.registry, wf, key)
        except OverrideError as e:
            raise UsageError(f"--set {item!r}: {str(e).split(': ', 1)[-1]}") from e
        wf.set(target.node_id, target.input, parse_value(raw, target.spec))


def print_problems(problems, stream=None, header: str = "") -> None:
    stream = stream or sys.stderr
    if header:
        print(header, file=stream)
    for p in problems:
        print(f"  - {p}", file=stream)
