"""``nodegen validate GRAPH``: list every problem (exit 0 when valid, 2 when not)."""

from __future__ import annotations

import json

from nodegen.cli import EXIT_INVALID, EXIT_OK
from nodegen.cli.common import add_engine_args, load_workflow, make_engine, print_problems


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="check a workflow and list every problem")
    p.add_argument("graph")
    p.add_argument("--target", action="append", default=[], metavar="NODE")
    p.add_argument("--json", action="store_true")
    add_engine_args(p)
    p.set_defaults(func=cmd_validate)


def cmd_validate(args) -> int:
    from nodegen.kernel.plan import plan

    engine = make_engine(args)
    wf = load_workflow(engine, args.graph)
    pl = plan(wf.data, engine.registry, args.target or None, engine.env)
    if args.json:
        print(json.dumps({"valid": pl.ok, "problems": [p.to_json() for p in pl.problems],
                          "warnings": [p.to_json() for p in pl.warnings], "order": pl.order}, indent=2))
    else:
        if pl.problems:
            print_problems(pl.problems, header=f"{args.graph}: {len(pl.problems)} problem(s):")
        if pl.warnings:
            print_problems(pl.warnings, header="warnings (nodes no output needs):")
        if pl.ok:
            print(f"{args.graph}: valid ({len(pl.order)} node(s) to run)")
    return EXIT_OK if pl.ok else EXIT_INVALID
