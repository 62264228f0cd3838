"""The job server's hot path: ``POST /jobs`` answered without FastAPI's per-request machinery.

Submitting is what scripts, sweeps and other applications do thousands of times a night, and for
a cached job FastAPI's routing, dependency solving and body validation cost about as much as the
job itself (bench/RESULTS.md). This ASGI middleware answers exactly the requests the ``POST /jobs``
route would answer itself, by calling the same submit function the route calls:

* ``POST /jobs`` with no query parameter but ``wait`` (a plain number from 0 to 300);
* ``Content-Type: application/json`` and a body that the route's own pydantic model
  (:class:`nodegen.server.schemas.JobRequest`) accepts.

Refusals of the job itself (``submit`` raising an error with a status) are answered as the app's
error handler answers them. Every other request, and any body the model does not accept, goes on
to FastAPI with its body replayed: request validation, its error answers and the OpenAPI page
stay in one place. The middleware sits inside the token and size-limit middlewares, so those
apply to both paths.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import Response

#: what ``?wait=`` may look like on the fast path (FastAPI takes the rest, and refuses what it must)
_NUMBER = re.compile(rb"[0-9]{1,6}(\.[0-9]{0,9})?")
MAX_WAIT = 300.0


class SubmitFastPath:
    """``submit(request, wait) -> Response`` runs the job's checks and acceptance (raising
    ``refused`` errors), ``refusal(error) -> Response`` turns such an error into the answer."""

    def __init__(self, app, *, model: type[BaseModel], submit: Callable[[Any, float], Awaitable[Response]],
                 refused: type[Exception], refusal: Callable[[Any], Response], path: str = "/jobs") -> None:
        self.app = app
        self.model = model
        self.submit = submit
        self.refused = refused
        self.refusal = refusal
        self.path = path

    async def __call__(self, scope, receive, send) -> None:
        wait = self._wait(scope) if self._routed_here(scope) else None
        if wait is None:
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        try:
            request = self.model.model_validate_json(body)
        except ValidationError:
            request = None
        if request is None:
            return await self.app(scope, _replay(body, receive), send)
        try:
            response = await self.submit(request, wait)
        except self.refused as e:
            response = self.refusal(e)
        await response(scope, receive, send)

    def _routed_here(self, scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            return False
        if scope.get("root_path"):
            return False
        for name, value in scope["headers"]:
            if name == b"content-type":
                return value.split(b";", 1)[0].strip().lower() == b"application/json"
        return False

    @staticmethod
    def _wait(scope) -> float | None:
        """The ``wait`` query parameter (0 without one); None: not a query for the fast path."""
        query: bytes = scope.get("query_string") or b""
        if not query:
            return 0.0
        name, eq, value = query.partition(b"=")
        if name != b"wait" or not eq or not _NUMBER.fullmatch(value):
            return None
        wait = float(value)
        return wait if wait <= MAX_WAIT else None


async def _read_body(receive) -> bytes | None:
    """The request's body (None: the client disconnected first). A body in pieces is read whole."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """``receive`` for the app behind: the body already read, then the client's own messages."""
    given = False

    async def replay():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
