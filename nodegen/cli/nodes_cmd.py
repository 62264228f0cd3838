"""``nodegen nodes [--json] [--category C]``: the node types and their schemas."""

from __future__ import annotations

import json
import sys

from nodegen.cli import UsageError
from nodegen.cli.common import add_engine_args, make_engine


def add_parser(sub) -> None:
    p = sub.add_parser("nodes", help="list node types (--json: the full schema the editor uses)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--category", default=None)
    add_engine_args(p)
    p.set_defaults(func=cmd_nodes)


def cmd_nodes(args) -> int:
    engine = make_engine(args)
    schema = engine.schema(args.category)
    if args.category is not None and not schema["nodes"]:
        tops = sorted({c.split("/")[0] for c in engine.registry.categories()})
        raise UsageError(f"no node type in category {args.category!r}; the categories are "
                         f"{', '.join(tops)} (a sub-category such as sampling/custom works too)")
    if args.json:
        print(json.dumps(schema, indent=2, default=str))
        return 0
    by_cat: dict[str, list] = {}
    for nd in schema["nodes"].values():
        by_cat.setdefault(nd["category"], []).append(nd)
    for cat in sorted(by_cat):
        print(f"{cat}:")
        for nd in sorted(by_cat[cat], key=lambda n: n["type"]):
            print(f"  {nd['type']:<28} {nd['description']}")
    for err in schema["errors"]:
        print(f"warning: {err['source']}: {err['message']}", file=sys.stderr)
    return 0
