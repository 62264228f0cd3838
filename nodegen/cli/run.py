"""``nodegen run GRAPH``: validate and run a workflow (a .json or a PNG with one embedded)."""

from __future__ import annotations

import json
import os
import sys
import threading

from nodegen.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, UsageError
from nodegen.cli.common import (
    add_engine_args,
    apply_sets,
    load_workflow,
    make_engine,
    print_problems,
    set_threads,
)
from nodegen.cli.failures import report_failures, wait_for_worker


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a workflow headless",
                       description="Validate and run a workflow; writes its outputs and prints where.")
    p.add_argument("graph", help="workflow .json, or a PNG with an embedded workflow")
    p.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input (NODE is a node id or a unique title); repeatable")
    p.add_argument("--out", default="output", metavar="DIR", help="output folder (default: ./output)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="compute device")
    p.add_argument("--keep-going", action="store_true", help="run the outputs whose branch is valid and finish independent branches "
                        "after a failure (skipped outputs are listed)")
    p.add_argument("--target", action="append", default=[], metavar="NODE",
                   help="run only what this node needs (id or unique title); repeatable")
    p.add_argument("--json", action="store_true", help="print machine-readable events (JSON lines)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch (default: NODEGEN_THREADS, else the idle cores: cores "
                        "minus the load average, at least 1)")
    add_engine_args(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from nodegen.cli.progress import JsonProgress, TerminalProgress
    from nodegen.kernel.context import CancelToken

    set_threads(args.threads)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out}: is a file, not a folder")
    try:
        engine = make_engine(args, output_dir=args.out, device=args.device)
        _ = engine.executor  # picks the device now: a bad --device is a usage error
    except ValueError as e:
        raise UsageError(str(e)) from e
    wf = load_workflow(engine, args.graph)
    apply_sets(engine, wf, args.set)
    engine.subscribe(JsonProgress() if args.json else TerminalProgress(), previews=False)
    cancel = CancelToken()
    box: dict = {}

    done = threading.Event()

    def work() -> None:
        try:
            box["result"] = engine.executor.run(wf.data, args.target or None,
                                                keep_going=args.keep_going, cancel=cancel)
        except BaseException as e:  # noqa: BLE001 - reported below
            box["error"] = e
        finally:
            done.set()

    t = threading.Thread(target=work, name="nodegen-run", daemon=True)
    t.start()
    if wait_for_worker(done, cancel):
        return EXIT_INTERRUPTED
    if "error" in box:
        raise box["error"]
    result = box["result"]
    if result.status == "invalid":
        if args.json:
            for p in result.problems:
                print(json.dumps({"event": "problem", **p.to_json()}))
        print_problems(result.problems, header=f"{args.graph}: the workflow is invalid:")
        return EXIT_INVALID
    if result.warnings and not args.json:
        print_problems(result.warnings, header="warnings (not needed by this run):")
    _report_skipped_targets(result.plan.skipped if result.plan else {}, args.json)
    report_failures(result.failures, args.debug)
    if result.status == "cancelled":
        return EXIT_INTERRUPTED
    paths = result.paths
    if args.json:
        print(json.dumps({"event": "outputs", "paths": paths, "status": result.status}))
    else:
        temp = engine.env.temp_dir
        for path in paths:
            print(f"preview {path}" if str(path).startswith(temp) else f"wrote {path}")
        print(f"{result.status}: {len(result.executed)} node(s) ran, {len(result.cached)} cached, "
              f"{result.seconds:.2f}s", file=sys.stderr)
    return EXIT_OK if result.status == "ok" else EXIT_FAILED


def _report_skipped_targets(skipped: dict, as_json: bool) -> None:
    """Outputs ``--keep-going`` left out because the part of the graph they need is invalid."""
    for nid, problems in skipped.items():
        if as_json:
            print(json.dumps({"event": "target_skipped", "node_id": nid,
                              "problems": [p.to_json() for p in problems]}))
        else:
            print(f"skipped output node {nid}: " + "; ".join(str(p) for p in problems), file=sys.stderr)
