"""What keeps the job server safe to expose: the token, request size limits, file names that stay
inside the configured folders.

* The server binds the loopback address by default; any other address needs ``--token``, and then
  every request (HTTP and WebSocket) must carry it: ``Authorization: Bearer TOKEN``, the
  ``X-Nodegen-Token`` header, or ``?token=TOKEN`` (for WebSockets from browsers).
* Request bodies are limited (``Content-Length`` and the bytes actually received).
* File names in a workflow (images, models) must be relative, without ``..``, and resolve inside
  the input folder, the model folders or the built-in models; results are served from the output
  folder only.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import parse_qs

MAX_BODY = 32 * 1024 * 1024  # 32 MiB: a workflow, or a PNG that embeds one


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class TokenMiddleware:
    """Refuses every request that does not carry the token (401 for HTTP, close 4401 for WebSockets)."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _given(self, scope) -> bytes | None:
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        if auth.lower().startswith(b"bearer "):
            return auth[7:].strip()
        if b"x-nodegen-token" in headers:
            return headers[b"x-nodegen-token"].strip()
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return query["token"][0].encode()
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        given = self._given(scope)
        if given is not None and hmac.compare_digest(given, self.token):
            return await self.app(scope, receive, send)
        what = "no token" if given is None else "a wrong token"
        message = (f"this server needs its token and the request carried {what}: send "
                   f"'Authorization: Bearer TOKEN' (or X-Nodegen-Token, or ?token=)")
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 4401, "reason": message[:120]})
            return
        await _send_json(send, 401, {"error": message, "field": "Authorization"})


class BodyLimitMiddleware:
    """Refuses request bodies above ``limit`` bytes with 413 (declared or actually sent)."""

    def __init__(self, app, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        message = {"error": f"the request body is larger than the limit of {self.limit} bytes",
                   "field": "body"}
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_json(send, 413, message)
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return msg

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, message)


class _TooLarge(Exception):
    pass


# -- file names ---------------------------------------------------------------------------------
class PathRefused(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def _inside(path: str | os.PathLike, roots: list[str]) -> bool:
    rp = os.path.realpath(path)
    return any(rp == r or rp.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _allowed_roots(env: Any, kind: str | None) -> list[str]:
    if kind in (None, "image", "input"):
        return [os.path.realpath(env.input_dir)]
    from nodegen.models.paths import builtin_models

    roots = [os.path.realpath(p) for p in env.paths.folders(kind)]
    return roots + [os.path.realpath(p) for p in builtin_models(kind).values()]


def check_file_names(doc: dict, registry: Any, env: Any, overridden: dict[tuple[str, str | None], str]) -> None:
    """Raise :class:`PathRefused` for a file input that names a path outside the configured
    folders. ``overridden`` maps ``(node id, input)`` to the ``set`` key that gave its value, so
    the error names the field the client sent."""
    roots: dict[str | None, list[str]] = {}
    for nid, n in (doc.get("nodes") or {}).items():
        nd = registry.get(n.get("type"))
        if nd is None:
            continue
        for name, value in (n.get("inputs") or {}).items():
            spec = nd.input(name)
            if spec is None or spec.widget != "file" or not isinstance(value, str) or not value:
                continue
            field_name = overridden.get((nid, name), f"workflow.nodes.{nid}.inputs.{name}")
            where = f"node {nid} ({n.get('title') or nd.type}), input {name!r}"
            posix, win = PurePosixPath(value), PureWindowsPath(value)
            if (posix.is_absolute() or win.is_absolute() or win.drive or value.startswith("~")
                    or ".." in posix.parts or ".." in win.parts):
                raise PathRefused(field_name, f"{where}: {value!r} must be a name inside the server's "
                                              f"folders (relative, without '..')")
            path = env.resolve_file(spec.file_kind, value)
            if spec.file_kind not in roots:
                roots[spec.file_kind] = _allowed_roots(env, spec.file_kind)
            if path is not None and not _inside(path, roots[spec.file_kind]):
                raise PathRefused(field_name, f"{where}: {value!r} is not inside the server's "
                                              f"{spec.file_kind or 'input'} folders")


def safe_child(root: str | os.PathLike, name: str) -> Path | None:
    """``root/name`` when it stays inside ``root`` (no ``..``, no absolute path), else None."""
    root = Path(root).resolve()
    if not name or PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
        return None
    path = (root / name).resolve()
    return path if path.is_relative_to(root) else None
