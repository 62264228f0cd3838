"""``nodegen info FILE``: what a workflow (.json, ComfyUI too) or an image holds."""

from __future__ import annotations

import json

from nodegen.cli import EXIT_OK, UsageError
from nodegen.cli.common import add_engine_args, make_engine


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show what a workflow or image holds",
                       description="Print a workflow's or PNG's contents: nodes, missing node types, "
                       "the models it needs (and whether they are found here, by name or by hash), "
                       "the nodegen version that made it, and for images the values used.")
    p.add_argument("file", help="workflow .json (nodegen or ComfyUI), or a PNG")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_engine_args(p)
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    from nodegen.sharing.info import describe, format_text

    engine = make_engine(args)
    try:
        info = describe(args.file, engine.registry, engine.env)
    except OSError as e:
        raise UsageError(f"{args.file}: cannot read the file: {e.strerror or e}") from e
    except ValueError as e:
        raise UsageError(str(e)) from e
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else format_text(info))
    return EXIT_OK
