"""``nodegen serve``: the HTTP + WebSocket job server (see :mod:`nodegen.server.app`)."""

from __future__ import annotations

import os
import sys
import threading
import time

from nodegen.cli import UsageError
from nodegen.cli.common import add_engine_args, check_threads


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the HTTP + WebSocket job server",
                       description="Serve jobs over HTTP: a durable queue in OUT/jobs.sqlite3, one warm "
                                   "engine running jobs in order, outputs in OUT/jobs/<id>/. API docs at /docs.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only); "
                                                       "any other address needs --token")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--out", default="output", metavar="DIR", help="output folder; the queue lives there too")
    p.add_argument("--token", default=os.environ.get("NODEGEN_TOKEN"), metavar="TOKEN",
                   help="require this token on every request (also NODEGEN_TOKEN)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="compute device")
    p.add_argument("--max-body", type=int, default=None, metavar="BYTES",
                   help="largest request body accepted (default 32 MiB)")
    p.add_argument("--fsync", action="store_true",
                   help="fsync each job's outputs before it is marked done (power-loss durable at once; "
                        "a few ms per job). Default: outputs are safe against a killed server at once and "
                        "synced to disk in the background; after a power loss, jobs whose outputs did "
                        "not reach the disk whole run again at the next start")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch")
    add_engine_args(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from nodegen.server.security import MAX_BODY, is_loopback

    if not is_loopback(args.host) and not args.token:
        raise UsageError(f"binding {args.host} exposes the server beyond this machine: give --token TOKEN "
                         f"(every request must then carry it)")
    check_threads(args.threads)  # now; the job thread applies it (importing torch) once the server listens
    import uvicorn

    from nodegen.server.app import ServerConfig, create_app

    app = create_app(ServerConfig(out_dir=args.out, models=args.models, input_dir=args.input_dir,
                                  device=args.device, token=args.token, max_body=args.max_body or MAX_BODY,
                                  threads=args.threads, fsync=args.fsync))
    # no access log (at level warning it printed nothing, but still built each line's fields)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           access_log=False,
                                           ws="websockets-sansio" if _has_sansio() else "auto"))
    threading.Thread(target=_announce, args=(server, args), daemon=True).start()
    server.run()
    return 0


def _has_sansio() -> bool:
    try:
        from uvicorn.protocols.websockets import websockets_sansio_impl  # noqa: F401
    except ImportError:
        return False
    return True


def _announce(server, args) -> None:
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"nodegen server: http://{shown}:{port}  (API docs: http://{shown}:{port}/docs; "
          f"outputs and queue in {os.path.abspath(args.out)})", flush=True)
    sys.stdout.flush()
