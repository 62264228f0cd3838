"""``nodegen import comfy FILE -o OUT.json`` and ``nodegen export comfy GRAPH -o OUT.json``."""

from __future__ import annotations

import json
import sys

from nodegen.cli import EXIT_OK, UsageError
from nodegen.cli.common import add_engine_args, make_engine


def add_parser(sub) -> None:
    p = sub.add_parser("import", help="convert a ComfyUI workflow to a nodegen workflow",
                       description="Convert a ComfyUI workflow (API prompt or editor format, .json, or "
                       "a ComfyUI PNG) to a nodegen workflow. Node types with no equivalent are kept "
                       "as placeholders; notes on what changed are printed.")
    p.add_argument("source", choices=["comfy"], help="the other tool's format")
    p.add_argument("file", help="ComfyUI workflow .json or PNG")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="nodegen workflow to write")
    p.set_defaults(func=cmd_import)

    e = sub.add_parser("export", help="convert a nodegen workflow to ComfyUI's API format",
                       description="Write a workflow in ComfyUI's API (prompt) format. Every node must "
                       "have a ComfyUI equivalent; notes are left out, reroutes, bypassed nodes and "
                       "primitive nodes are resolved.")
    e.add_argument("target", choices=["comfy"], help="the other tool's format")
    e.add_argument("graph", help="nodegen workflow .json (or PNG)")
    e.add_argument("-o", "--output", required=True, metavar="OUT", help="ComfyUI API .json to write")
    add_engine_args(e)
    e.set_defaults(func=cmd_export)


def cmd_import(args) -> int:
    from pathlib import Path

    from nodegen.formats import comfy, png
    from nodegen.formats.open import MALFORMED
    from nodegen.kernel.jsondoc import JsonDocError, loads
    from nodegen.kernel.workflow import Workflow, WorkflowError, parse, read_bytes

    path = Path(args.file)
    try:
        raw = read_bytes(path)
        if raw[:8] == b"\x89PNG\r\n\x1a\n":
            text = png.png_text_bytes(raw, path)
            if png.WORKFLOW_KEY in text:
                raise UsageError(f"{path} holds a nodegen workflow already; nothing to import")
            if "workflow" not in text and "prompt" not in text:
                raise UsageError(f"{path}: this PNG holds no ComfyUI workflow ('prompt'/'workflow' chunks)")
            doc = comfy.import_png_text(text, source=str(path))
        else:
            try:
                data = loads(raw)
            except JsonDocError as e:
                raise UsageError(f"{path}: {e}") from e
            if isinstance(data, dict) and data.get("format") == "nodegen-workflow":
                raise UsageError(f"{path} is already a nodegen workflow; nothing to import")
            doc, _notes = comfy.import_comfy(data, source=str(path))
        wf = Workflow(parse(doc, str(path)))
    except OSError as e:
        raise UsageError(f"{path}: cannot read the file: {e.strerror or e}") from e
    except (ValueError, WorkflowError) as e:  # JSON errors, ComfyImportError, PngWorkflowError
        raise UsageError(str(e)) from e
    except MALFORMED as e:  # a damaged ComfyUI file: an error, not a traceback
        raise UsageError(f"{path}: cannot import this ComfyUI workflow: the file is malformed "
                         f"({type(e).__name__}: {str(e)[:200]})") from e
    imported = wf.metadata.get("import") or {}
    try:
        wf.save(args.output)
    except (OSError, UnicodeError) as e:
        raise UsageError(f"cannot write {args.output}: {getattr(e, 'strerror', None) or e}") from e
    for note in imported.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.output} ({len(wf.nodes)} nodes, from a {imported.get('from')})")
    return EXIT_OK


def cmd_export(args) -> int:
    from nodegen.formats.comfy import ComfyExportError, export_api
    from nodegen.kernel.workflow import WorkflowError, atomic_write_text

    engine = make_engine(args)
    try:
        wf = engine.prepare(args.graph)
        warnings: list[str] = []
        api = export_api(wf.data, engine.registry, warnings)
    except (WorkflowError, ComfyExportError, ValueError) as e:
        raise UsageError(str(e)) from e
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    atomic_write_text(args.output, json.dumps(api, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.output} ({len(api)} ComfyUI nodes)")
    return EXIT_OK
