"""A small client for the job server (``python main.py serve``), on the standard library only:
importing it imports neither torch nor the engine (PIL is imported by :meth:`Client.images`).

::

    from nodegen.client import Client
    c = Client("http://127.0.0.1:8765", token=None)
    job = c.submit("graphs/txt2img.json", set={"Sampler.seed": 7})
    c.wait(job)["status"]        # "done"
    c.run("graphs/txt2img.json", set={"Sampler.seed": 8})  # submit and wait in one request
    c.images(job)[0].save("seed7.png")
    for ev in c.events(job): ...  # the objects 'run --json' prints

A refused request raises :class:`ClientError` with the server's message and the field at fault.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

FINAL = ("done", "failed", "cancelled")
#: A kept-alive connection idle longer than this is not reused (uvicorn closes idle ones after 5 s).
KEEP_ALIVE = 2.0
#: Seconds one long-poll request of :meth:`Client.wait` may be held by the server.
LONG_POLL = 30.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ClientError(Exception):
    """The server refused a request: ``status`` (HTTP), ``error`` (its message), ``field``."""

    def __init__(self, status: int, error: str, field: str | None = None, body: dict | None = None) -> None:
        super().__init__(f"{status}: {error}" + (f" (field: {field})" if field else ""))
        self.status, self.error, self.field, self.body = status, error, field, body or {}


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._local = threading.local()  # one kept-alive connection per thread
        self._through_proxy: bool | None = None  # found at the first request (see _direct)

    # -- the contract ----------------------------------------------------------------------
    def submit(self, workflow: Any, set: dict | None = None, targets: list | None = None) -> str:  # noqa: A002
        """Queue a job; ``workflow`` is a path (.json, or a PNG that embeds one) or a document dict.
        Returns the job id."""
        return self._submit(workflow, set, targets)["id"]

    def run(self, workflow: Any, set: dict | None = None, targets: list | None = None,  # noqa: A002
            timeout: float | None = None) -> dict:
        """Submit a job and wait until it ends, in one request while it lasts under a long poll
        (``POST /jobs?wait=S``; then :meth:`wait`): ``submit`` then ``wait`` without the second
        round trip. Returns the job's status (``status``, ``files``, ``timings``, ...); raises
        TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ask = LONG_POLL if timeout is None else min(LONG_POLL, timeout)
        job = self._submit(workflow, set, targets, wait=ask)
        if job["status"] in FINAL:
            return job
        return self.wait(job["id"], None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _submit(self, workflow: Any, set: dict | None, targets: list | None,  # noqa: A002
                wait: float = 0.0) -> dict:
        held = {"wait": f"{wait:.3f}"} if wait > 0 else {}
        timeout = self.timeout + wait
        if isinstance(workflow, (str, os.PathLike)):
            with open(workflow, "rb") as f:
                data = f.read()
            if data.startswith(PNG_MAGIC):
                query = dict(held)
                if set:
                    query["set"] = json.dumps(set)
                if targets:
                    query["targets"] = json.dumps(list(targets))
                path = "/jobs/png" + ("?" + urllib.parse.urlencode(query) if query else "")
                return self._request("POST", path, data, "image/png", timeout)
            try:
                workflow = json.loads(data.decode("utf-8-sig"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValueError(f"{workflow}: not a workflow file (neither JSON nor PNG): {e}") from e
        body: dict[str, Any] = {"workflow": workflow}
        if set:
            body["set"] = set
        if targets:
            body["targets"] = list(targets)
        return self._json("POST", "/jobs" + ("?" + urllib.parse.urlencode(held) if held else ""), body,
                          timeout=timeout)

    def status(self, job_id: str) -> dict:
        """The job: ``status`` (queued, running, done, failed, cancelled), ``files``, ``error``, ..."""
        return self._json("GET", f"/jobs/{_q(job_id)}")

    def wait(self, job_id: str, timeout: float | None = None) -> dict:
        """Wait until the job is done, failed or cancelled; returns its status. Raises
        TimeoutError after ``timeout`` seconds. The server holds each request until the job ends
        (a long poll, ``GET /jobs/ID?wait=S``), so the answer comes as soon as the job ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            ask = LONG_POLL if deadline is None else max(0.0, min(LONG_POLL, deadline - time.monotonic()))
            t0 = time.monotonic()
            job = self._json("GET", f"/jobs/{_q(job_id)}" + (f"?wait={ask:.3f}" if ask > 0 else ""),
                             timeout=self.timeout + ask)
            if job["status"] in FINAL:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout} s")
            if time.monotonic() - t0 < ask / 2:  # a server that does not hold requests: poll gently
                time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
                delay = min(delay * 1.5, 0.25)

    def cancel(self, job_id: str) -> dict:
        return self._json("POST", f"/jobs/{_q(job_id)}/cancel")

    def images(self, job_id: str) -> list:
        """The job's images as PIL images (in the order they were written)."""
        import io

        from PIL import Image

        out = []
        for name, data in self.files(job_id):
            if name.lower().endswith((".png", ".jpg", ".jpeg", ".webp")):
                img = Image.open(io.BytesIO(data))
                img.load()
                out.append(img)
        return out

    def events(self, job_id: str) -> Iterator[dict]:
        """The job's events (the objects ``run --json`` prints), live while it runs; ends with
        ``{"event": "outputs", "paths": [...], "status": ...}``."""
        with self._open("GET", f"/jobs/{_q(job_id)}/events", timeout=None) as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)

    # -- more ------------------------------------------------------------------------------
    def results(self, job_id: str) -> dict:
        """``{"files": [{"name", "url", "values"}]}``: files with their provenance."""
        return self._json("GET", f"/jobs/{_q(job_id)}/results")

    def files(self, job_id: str) -> list[tuple[str, bytes]]:
        out = []
        for f in self.results(job_id)["files"]:
            with self._open("GET", f"/jobs/{_q(job_id)}/files/{_q(f['name'], safe='/')}") as resp:
                out.append((f["name"], resp.read()))
        return out

    def jobs(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[dict]:
        query = urllib.parse.urlencode({k: v for k, v in (("status", status), ("limit", limit),
                                                          ("offset", offset)) if v is not None})
        return self._json("GET", f"/jobs?{query}")["jobs"]

    def validate(self, workflow: dict, set: dict | None = None, targets: list | None = None) -> dict:  # noqa: A002
        return self._json("POST", "/validate", {"workflow": workflow, "set": set, "targets": targets})

    def nodes(self) -> dict:
        return self._json("GET", "/nodes")

    def health(self) -> dict:
        return self._json("GET", "/health")

    # -- transport -------------------------------------------------------------------------
    def _json(self, method: str, path: str, body: Any = None, timeout: float = -1.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        return self._request(method, path, data, "application/json" if data is not None else None, timeout)

    def _request(self, method: str, path: str, data: bytes | None, content_type: str | None,
                 timeout: float = -1.0) -> Any:
        """One JSON request on this thread's kept-alive connection (a new TCP connection per
        request costs more than the server's own work on a cached job)."""
        wait = self.timeout if timeout == -1.0 else timeout
        if not self._direct():
            with self._open(method, path, data, content_type, wait) as resp:
                return json.loads(resp.read() or b"null")
        headers = {"Content-Type": content_type} if content_type else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in (1, 2):
            conn, reused = self._connection(wait)
            try:
                conn.request(method, self._prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self._drop()
                if reused and attempt == 1:
                    continue  # the server closed the idle connection before reading the request
                raise urllib.error.URLError(e) from None
            except TimeoutError:
                self._drop()
                raise
            except (OSError, http.client.HTTPException) as e:
                self._drop()
                raise urllib.error.URLError(e) from None
            if resp.will_close:
                self._drop()
            else:
                self._local.used = time.monotonic()
            if resp.status >= 400:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"error": raw.decode("utf-8", "replace") or resp.reason}
                raise ClientError(resp.status, str(body.get("error")), body.get("field"), body)
            return json.loads(raw or b"null")
        raise AssertionError("unreachable")  # pragma: no cover

    def _direct(self) -> bool:
        """Whether requests go straight to the server (no proxy configured for it). The proxy
        settings (environment variables) are read at the client's first request: reading them
        costs about as much as the server's own work on a cached job."""
        if self._through_proxy is None:
            parts = urllib.parse.urlsplit(self.url)
            proxies = urllib.request.getproxies()
            self._through_proxy = parts.scheme not in ("http", "https") or (
                parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname or ""))
        return not self._through_proxy

    @property
    def _prefix(self) -> str:
        return urllib.parse.urlsplit(self.url).path

    def _connection(self, timeout: float | None) -> tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None and time.monotonic() - self._local.used < KEEP_ALIVE:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        self._drop()
        parts = urllib.parse.urlsplit(self.url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
        self._local.conn, self._local.used = conn, time.monotonic()
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close this thread's kept-alive connection (also closed when the client is collected)."""
        self._drop()

    def _open(self, method: str, path: str, data: bytes | None = None, content_type: str | None = None,
              timeout: float | None = -1.0):
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(req, timeout=self.timeout if timeout == -1.0 else timeout)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"error": raw.decode("utf-8", "replace") or e.reason}
            raise ClientError(e.code, str(body.get("error")), body.get("field"), body) from None


def _q(text: str, safe: str = "") -> str:
    return urllib.parse.quote(str(text), safe=safe)
