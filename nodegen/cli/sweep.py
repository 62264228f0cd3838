"""``nodegen sweep GRAPH --over NODE.INPUT=SPEC ...``: one workflow over many values."""

from __future__ import annotations

import json
import sys
import time

from nodegen.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from nodegen.cli.common import add_engine_args, set_threads


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run one workflow over many values (seeds, prompts, settings)",
        description="Run GRAPH once per combination of the --over values. SPEC: a range 1..10 (1..100:10 "
                    "with a step), a list a,b,c, @file.txt (one value per line), random:N (N random seeds, "
                    "recorded). Writes OUT/<job>/ folders and OUT/sweep.jsonl; running it again resumes.")
    p.add_argument("graph", help="workflow .json, or a PNG with an embedded workflow")
    p.add_argument("--over", action="append", default=[], required=True, metavar="NODE.INPUT=SPEC",
                   help="an input to sweep and its values; repeatable")
    p.add_argument("--zip", dest="zipped", action="store_true",
                   help="pair the value lists (job i takes value i of each) instead of every combination")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="N local worker processes, each with its own engine (default: one per GPU, else 1)")
    where.add_argument("--ray", default=None, metavar="ADDRESS",
                       help="run on Ray: 'local' starts one here, 'auto' joins the running cluster, or an "
                            "address (needs pip install \"nodegen[ray]\")")
    p.add_argument("--ray-workers", type=int, default=None, metavar="N",
                   help="Ray actors (default: one per GPU, else one per CPU)")
    p.add_argument("--ray-gpus", type=float, default=None, metavar="G",
                   help="GPUs per Ray actor, a fraction shares one (default: 1 when the cluster has GPUs)")
    p.add_argument("--out", default="output", metavar="DIR", help="output folder (default: ./output)")
    p.add_argument("--grid", action="store_true", help="also draw OUT/grid.png (one, two or three swept inputs)")
    p.add_argument("--json", action="store_true", help="print JSON events instead of a progress bar")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="compute device")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch per worker")
    add_engine_args(p)
    p.set_defaults(func=cmd_sweep)


class Progress:
    """A bar for the whole sweep on a terminal; a line per job otherwise."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()

    def __call__(self, ev: dict) -> None:
        kind = ev["event"]
        if kind == "sweep_started":
            self._line(f"sweep: {ev['jobs']} job(s), {ev['skipped']} already done, {ev['to_run']} to run "
                       f"on {ev['backend']}")
        elif kind == "job_finished":
            n, total = ev["finished"], ev["to_run"]
            status = "" if ev["status"] == "done" else f"  job {ev['job']} FAILED: {ev.get('error', '')}"
            if self.tty:
                width = 30
                filled = int(width * n / max(total, 1))
                rate = n / max(time.monotonic() - self.t0, 1e-9)
                self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {n}/{total}  {rate:.2f} jobs/s")
                if status:
                    self.stream.write("\n" + status.strip() + "\n")
                self.stream.flush()
            else:
                self._line(f"[{n}/{total}] job {ev['job']} {ev['status']} ({ev['seconds']:.2f}s){status}")
        elif kind == "sweep_finished":
            if self.tty:
                self.stream.write("\n")
            grid = f"; grid {ev['grid']}" if ev.get("grid") else ""
            self._line(f"sweep: {ev['done']} done, {ev['failed']} failed, {ev['skipped']} skipped in "
                       f"{ev['seconds']:.1f}s; manifest {ev['manifest']}{grid}")

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def cmd_sweep(args) -> int:
    from nodegen.sweep.driver import SweepError, SweepOptions, run_sweep
    from nodegen.sweep.local import WorkerFailed

    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.ray:
        try:
            import ray  # noqa: F401
        except ImportError as e:
            raise UsageError('--ray needs Ray: pip install "nodegen[ray]"') from e
    opts = SweepOptions(graph=args.graph, overs=args.over, zipped=args.zipped, out=args.out,
                        workers=args.ray_workers if args.ray else args.workers, ray=args.ray, grid=args.grid,
                        ray_gpus=args.ray_gpus,
                        models=args.models, input_dir=args.input_dir, device=args.device, threads=args.threads)
    if not args.ray and (args.workers or 1) <= 1:
        set_threads(args.threads)  # the jobs run in this process
    emit = (lambda ev: print(json.dumps(ev, default=str), flush=True)) if args.json else Progress()
    try:
        report = run_sweep(opts, emit)
    except SweepError as e:
        raise UsageError(str(e)) from e
    except WorkerFailed as e:
        print(f"nodegen: sweep stopped: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\nnodegen: sweep interrupted; finished jobs are kept (run the same command to resume)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if report.failed == 0 else EXIT_FAILED
