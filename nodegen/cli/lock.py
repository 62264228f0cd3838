"""``nodegen lock GRAPH``: record name, size and SHA-256 of every model file a workflow uses."""

from __future__ import annotations

import sys

from nodegen.cli import EXIT_FAILED, EXIT_OK, UsageError
from nodegen.cli.common import add_engine_args, make_engine


def add_parser(sub) -> None:
    p = sub.add_parser("lock", help="fill in the hashes of the models a workflow uses",
                       description="Hash every model file the workflow uses (cached by path, size and "
                       "mtime) and write them to its 'models' section, so that the workflow finds "
                       "its models by hash on another machine. Writes atomically.")
    p.add_argument("graph", help="workflow .json (a ComfyUI file is converted; then give -o)")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of over GRAPH")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_engine_args(p)
    p.set_defaults(func=cmd_lock)


def cmd_lock(args) -> int:
    from nodegen.formats import open_any
    from nodegen.kernel.workflow import WorkflowError
    from nodegen.sharing.models import describe_missing, lock

    engine = make_engine(args)
    try:
        wf = open_any(args.graph)
    except (WorkflowError, ValueError) as e:
        raise UsageError(str(e)) from e
    if args.graph.lower().endswith(".png") and not args.output:
        raise UsageError("GRAPH is an image: give -o OUT.json to write the locked workflow")
    if (wf.metadata.get("import") or {}).get("from", "").startswith("ComfyUI") and not args.output:
        raise UsageError("GRAPH is a ComfyUI workflow: give -o OUT.json (the original is not overwritten)")
    last = {"name": None}

    def progress(name: str, done: int, total: int) -> None:
        if args.quiet:
            return
        if last["name"] != name:
            last["name"] = name
            print(f"hashing {name}", file=sys.stderr)
        if total and done == total:
            print(f"  {total} bytes done", file=sys.stderr)

    try:
        report = lock(wf.data, engine.registry, engine.env, progress)
    except ValueError as e:  # a model that is not a regular file, a model folder too large
        raise UsageError(str(e)) from e
    try:
        target = wf.save(args.output or args.graph)
    except OSError as e:  # a full disk: the original file is untouched (atomic write)
        raise UsageError(f"cannot write {args.output or args.graph}: {e.strerror or e}; the file "
                         f"is unchanged") from e
    for e in report.entries:
        state = "missing here" if any(u.name == e["name"] and u.kind == e.get("kind") for u in report.missing) else "ok"
        print(f"{e.get('kind')}/{e['name']}: {describe_missing(e) or 'no hash recorded'} [{state}]")
    print(f"wrote {target}")
    for u in report.missing:
        print(f"warning: node {u.node_id} ({u.title}) input {u.input!r}: {u.kind} file {u.name!r} "
              f"not found ({engine.env.describe_files(u.kind)}); its previous entry is kept", file=sys.stderr)
    return EXIT_FAILED if report.missing else EXIT_OK
