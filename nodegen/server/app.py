"""The job server's HTTP + WebSocket API (FastAPI on Starlette, served by uvicorn).

Endpoints (the OpenAPI page is ``/docs``):

* ``POST /jobs`` (JSON ``{workflow, set?, targets?}``) and ``POST /jobs/png`` (a PNG that embeds a
  workflow; ``set`` and ``targets`` as query parameters holding JSON): submit; 201 ``{id, status}``,
  or with ``?wait=S`` the job as ``GET /jobs/{id}`` shows it once it has ended (or after S seconds).
* ``GET /jobs?status=`` list; ``GET /jobs/{id}`` one job (``?wait=S``: answer when the job ends,
  or after S seconds, whichever comes first); ``POST /jobs/{id}/cancel``.
* ``GET /jobs/{id}/results``: the files with their provenance; ``GET /jobs/{id}/files/{name}``: a file.
* ``GET /jobs/{id}/events``: the job's events as JSON lines (streamed while it runs);
  ``WS /ws/jobs/{id}``: the same events on a WebSocket; ``WS /ws``: every job's events.
* ``POST /validate``, ``GET /nodes`` (what ``nodes --json`` prints), ``GET /health``.

Events are the objects ``run --json`` prints, ending with ``{"event": "outputs", "paths", "status"}``.
Every error is JSON ``{"error": ..., "field": ...}`` with a 4xx status; unexpected failures are a
500 with a one-line message, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from nodegen import __version__
from nodegen.runtime.jobs import JobInputError, prepare_workflow, read_record
from nodegen.server import schemas as S
from nodegen.server.fast_submit import MAX_WAIT, SubmitFastPath
from nodegen.server.flusher import OutputFlusher
from nodegen.server.hub import EndWaiters, EventHub
from nodegen.server.queue import FINAL, STATUSES, JobQueue, new_job_id
from nodegen.server.runner import JobRunner, job_folder
from nodegen.server.security import (
    MAX_BODY,
    BodyLimitMiddleware,
    PathRefused,
    TokenMiddleware,
    check_file_names,
    safe_child,
)

log = logging.getLogger("nodegen.server")

#: ``POST /jobs?wait=S``: submit, then answer when the job ends (or after S seconds).
WAIT_TO_END = Query(0, ge=0, le=MAX_WAIT, description=(
    "seconds to wait for the job to end before answering with the job as GET /jobs/{id} shows it "
    "(submit and wait in one request); 0: answer at once with {id, status}"))

ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": S.ErrorBody}, 401: {"model": S.ErrorBody}, 403: {"model": S.ErrorBody},
          404: {"model": S.ErrorBody}, 413: {"model": S.ErrorBody}, 422: {"model": S.ErrorBody}}


@dataclass
class ServerConfig:
    out_dir: str = "output"
    models: list[str] = field(default_factory=list)
    input_dir: str = "input"
    device: str = "auto"
    token: str | None = None
    max_body: int = MAX_BODY
    #: torch's CPU threads (``--threads``; None: NODEGEN_THREADS or the default policy)
    threads: int | None = None
    #: fsync each job's output folder before marking it done (power-loss durable at once);
    #: otherwise the folder is synced in the background and checked at the next start.
    fsync: bool = False
    #: An Engine to use (tests); built from the fields above when None.
    engine: Any = None


class ApiError(Exception):
    def __init__(self, status: int, message: str, field_name: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.field, self.extra = status, field_name, extra


class ServerState:
    def __init__(self, config: ServerConfig) -> None:
        from nodegen.runtime.engine import Engine

        self.config = config
        self.out_dir = Path(config.out_dir).resolve()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.engine = config.engine or Engine(models=config.models or None, output_dir=self.out_dir,
                                              input_dir=config.input_dir, device=config.device)
        # request threads check documents on their own Engine (no shared per-run state)
        self.checker = Engine(models=config.models or None, output_dir=self.out_dir,
                              input_dir=self.engine.env.input_dir, registry=self.engine.registry)
        self.checker.env.paths = self.engine.env.paths
        self.queue = JobQueue(self.out_dir / "jobs.sqlite3")
        self.hub = EventHub()
        self.waiters = EndWaiters()
        self.flusher = OutputFlusher(self.queue, self.out_dir)
        self.runner = JobRunner(self.engine, self.queue, self.hub, self.out_dir, sync=config.fsync,
                                finished=self._ended, prepare=lambda: _apply_threads(config.threads))

    def _ended(self, job_id: str, job: dict | None = None) -> None:
        self.waiters.ended(job_id, job)
        if not self.config.fsync:
            self.flusher.poke()

    def outputs_intact(self, job: dict) -> bool:
        """Whether a finished job's folder holds its record and every file whole (checked at
        start for jobs whose folder may not have reached the disk before a crash)."""
        return read_record(job_folder(self.out_dir, job["id"]), verify=True) is not None

    # -- checks ----------------------------------------------------------------------------
    def check_job(self, workflow: Any, overrides: dict | None, targets: list | None) -> dict:
        """Everything a job needs to be accepted; returns the parsed document."""
        from nodegen.kernel.plan import plan
        from nodegen.runtime.overrides import resolve

        try:
            wf, target_ids = prepare_workflow(self.checker, workflow, overrides, targets)
        except JobInputError as e:
            raise ApiError(422, str(e), e.field) from e
        overridden: dict[tuple[str, str | None], str] = {}
        for key in overrides or {}:
            t = resolve(self.checker.registry, wf, key)
            overridden[(t.node_id, t.input)] = f"set.{key}"
        try:
            check_file_names(wf.data, self.checker.registry, self.checker.env, overridden)
        except PathRefused as e:
            raise ApiError(403, str(e), e.field) from e
        p = plan(wf.data, self.checker.registry, target_ids, self.checker.env)
        if p.problems:
            first = p.problems[0]
            where = None
            if first.node_id is not None:
                where = f"workflow.nodes.{first.node_id}" + (f".inputs.{first.input}" if first.input else "")
                where = overridden.get((first.node_id, first.input), where)
            raise ApiError(422, "the workflow is invalid: " + "; ".join(str(x) for x in p.problems), where,
                           problems=[x.to_json() for x in p.problems])
        return wf.data

    def job_or_404(self, job_id: str) -> dict:
        job = self.queue.get(job_id)
        if job is None:
            raise ApiError(404, f"no job with id {job_id!r}", "job_id")
        return job

    # -- events ----------------------------------------------------------------------------
    def event_batches(self, job_id: str, poll: float = 1.0) -> Iterator[list[dict]]:
        """Lists of the job's events until it ends (stored ones for a finished job)."""
        index = 0
        while True:
            if self.hub.known(job_id):
                events, ended = self.hub.wait(job_id, index, poll)
                index += len(events)
                if events:
                    yield events
                if ended:
                    return
                continue
            job = self.queue.get(job_id)
            if job is None:
                return
            if job["status"] in FINAL:
                stored = self.queue.events(job_id) or []
                if stored[index:]:
                    yield stored[index:]
                return
            time.sleep(min(poll, 0.1))


def refusal(exc: ApiError) -> JSONResponse:
    """The answer to a refused request: ``{"error", "field", ...}`` with the error's status."""
    return JSONResponse({"error": str(exc), "field": exc.field, **exc.extra}, status_code=exc.status)


def _field_of(loc: tuple) -> str:
    parts = [str(x) for x in loc]
    if parts and parts[0] in ("body", "query", "path", "header") and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError):
        return refusal(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError):
        errors = [{"field": "body" if e.get("type") == "json_invalid" else _field_of(tuple(e.get("loc", ()))),
                   "message": e.get("msg", "invalid")} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            first = {"field": "body", "message": "the body is not valid JSON"}
        return JSONResponse({"error": f"{first['field']}: {first['message']}", "field": first["field"],
                             "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # FastAPI's answer to a body json cannot read (nested deeper than Python recurses)
            return JSONResponse({"error": "the body could not be read as JSON (nested too deeply?)",
                                 "field": "body"}, status_code=400)
        return JSONResponse({"error": str(exc.detail), "field": None}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception):
        log.exception("unexpected error")
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}", "field": None},
                            status_code=500)


def _apply_threads(threads: int | None) -> None:
    """Set torch's thread count, in the job thread (:meth:`JobRunner._prepare_once`). Importing torch
    there (1-2 s) instead of before the app is built lets the server listen first: building the app
    imports no torch (tests/test_lean_imports.py)."""
    from nodegen.runtime.threads import apply_threads

    try:
        apply_threads(threads)
    except ValueError as e:  # a bad NODEGEN_THREADS (``serve`` checks it before it starts)
        log.warning("threads: %s; torch's default thread count is kept", e)


def create_app(config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    state = ServerState(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        recovered = state.queue.recover(state.outputs_intact)
        if recovered["running"]:
            log.warning("re-queued %d job(s) interrupted by the last shutdown", recovered["running"])
        if recovered["damaged"]:
            log.warning("re-queued %d finished job(s) whose outputs did not reach the disk whole",
                        recovered["damaged"])
        state.flusher.start()
        state.runner.start()
        try:
            yield
        finally:
            await asyncio.to_thread(state.runner.stop)
            await asyncio.to_thread(state.flusher.stop)
            state.queue.close()

    app = FastAPI(title="nodegen job server", version=__version__, lifespan=lifespan,
                  description="Runs nodegen workflows as jobs: a durable queue, one warm engine.")
    app.state.nodegen = state
    _install_error_handlers(app)

    def accept(workflow: Any, overrides: dict | None, targets: list | None, job_id: str | None = None) -> dict:
        doc = state.check_job(workflow, overrides, targets)
        # the runner may start the job while its acceptance is being fsynced (see JobQueue.submit)
        job_id = state.queue.submit(doc, overrides, targets, committed=state.runner.notify, job_id=job_id)
        return {"id": job_id, "status": "queued"}

    def accept_png(data: bytes, overrides: dict | None, targets: list | None, job_id: str | None = None) -> dict:
        from nodegen.formats.png import PngWorkflowError, read_workflow

        with tempfile.TemporaryDirectory(prefix="nodegen-upload-") as tmp:
            path = Path(tmp) / "upload.png"
            path.write_bytes(data)
            try:
                doc = read_workflow(path)
            except PngWorkflowError as e:
                raise ApiError(422, str(e).replace(str(path), "the uploaded PNG"), "body") from e
        return accept(doc, overrides, targets, job_id)

    async def answer(submit_job: Callable[[str | None], dict], wait: float) -> JSONResponse:
        """Run ``submit_job`` (the checks, the queue insert and its fsync block) in a worker thread
        and answer 201: at once with ``{id, status}``, or with ``wait`` > 0 once the job has ended
        (or ``wait`` seconds have passed) with the job as ``GET /jobs/{id}`` shows it: submit and
        wait in one request. The waiter is registered under the job's id before the job exists,
        so an end that comes before the acceptance's fsync returns is not missed."""
        if wait <= 0:
            return JSONResponse(await run_in_threadpool(submit_job, None), status_code=201)
        job_id = new_job_id()
        ended = state.waiters.register(job_id, timeout=wait)
        try:
            await run_in_threadpool(submit_job, job_id)
            return JSONResponse(await ended or state.job_or_404(job_id), status_code=201)
        finally:
            state.waiters.forget(job_id, ended)

    async def submit_request(body: S.JobRequest, wait: float) -> JSONResponse:
        return await answer(lambda job_id: accept(body.workflow, body.set, body.targets, job_id), wait)

    # innermost first: the token and the size limit apply to the fast path too
    app.add_middleware(SubmitFastPath, model=S.JobRequest, submit=submit_request, refused=ApiError,
                       refusal=refusal)
    app.add_middleware(BodyLimitMiddleware, limit=config.max_body)
    if config.token:
        app.add_middleware(TokenMiddleware, token=config.token)

    @app.post("/jobs", status_code=201, response_model=S.JobAccepted | S.Job, responses=ERRORS,
              summary="Submit a workflow document")
    async def submit(body: S.JobRequest, wait: float = WAIT_TO_END):
        # Most submits never get here: SubmitFastPath answers the valid ones with submit_request
        # before FastAPI's routing (this route documents them, and answers the rest). One hop to a
        # worker thread; the answers are the response models' shapes already: sent as they are
        return await submit_request(body, wait)

    @app.post("/jobs/png", status_code=201, response_model=S.JobAccepted | S.Job, responses=ERRORS,
              summary="Submit a PNG that embeds a workflow (raw body, Content-Type image/png)",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "image/png": {"schema": {"type": "string", "format": "binary"}}}}})
    async def submit_png(request: Request,
                         set: str | None = Query(None, description='JSON: {"NODE.INPUT": value}'),  # noqa: A002
                         targets: str | None = Query(None, description="JSON list of node ids or titles"),
                         wait: float = WAIT_TO_END):
        data = await request.body()
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ApiError(422, "the body is not a PNG file", "body")
        overrides = _json_query(set, "set", dict)
        target_list = _json_query(targets, "targets", list)
        return await answer(lambda job_id: accept_png(data, overrides, target_list, job_id), wait)

    @app.get("/jobs", response_model=S.JobList, responses=ERRORS, summary="List jobs")
    def list_jobs(status: S.Status | None = None, limit: int = Query(100, ge=1, le=1000),
                  offset: int = Query(0, ge=0)):
        return {"jobs": state.queue.list(status, limit, offset), "counts": state.queue.counts()}

    @app.get("/jobs/{job_id}", response_model=S.Job, responses=ERRORS, summary="One job's status")
    async def get_job(job_id: str, wait: float = Query(0, ge=0, le=MAX_WAIT, description=(
            "seconds to wait for the job to end before answering (long poll); 0: answer at once"))):
        # the records are the queue's, already in the schema's shape: answered as they are
        if wait <= 0:
            return JSONResponse(state.job_or_404(job_id))
        ended = state.waiters.register(job_id, timeout=wait)
        try:
            job = state.job_or_404(job_id)
            if job["status"] not in FINAL:
                job = await ended or state.job_or_404(job_id)  # None: the wait is over
            return JSONResponse(job)
        finally:
            state.waiters.forget(job_id, ended)

    @app.post("/jobs/{job_id}/cancel", response_model=S.JobAccepted, responses=ERRORS, summary="Cancel a job")
    def cancel_job(job_id: str):
        state.job_or_404(job_id)
        status = state.queue.cancel_queued(job_id)
        if status == "running":
            state.runner.cancel_running(job_id)  # the runner records its end
        elif status == "cancelled":
            state.waiters.ended(job_id)  # a queued job: its waiters answer now
        return {"id": job_id, "status": status}

    @app.get("/jobs/{job_id}/results", response_model=S.Results, responses=ERRORS,
             summary="The job's files and their provenance")
    def results(job_id: str, request: Request):
        from nodegen.formats import png, webp

        job = state.job_or_404(job_id)
        folder = job_folder(state.out_dir, job_id)
        files = []
        for name in job["files"]:
            path = safe_child(folder, name)
            values = None
            read = None if path is None else {".png": png.read_values, ".webp": webp.read_values}.get(path.suffix.lower())
            if read is not None:
                try:
                    values = read(path)
                except (png.PngWorkflowError, ValueError, OSError):
                    values = None
            url = str(request.url_for("job_file", job_id=job_id, name=name))
            files.append({"name": name, "url": url, "values": values})
        return {"id": job_id, "status": job["status"], "files": files}

    @app.get("/jobs/{job_id}/files/{name:path}", name="job_file", responses=ERRORS,
             response_class=FileResponse, summary="One output file of a job")
    def job_file(job_id: str, name: str):
        job = state.job_or_404(job_id)
        path = safe_child(job_folder(state.out_dir, job_id), name)
        if path is None:
            raise ApiError(403, f"{name!r} is outside the job's output folder", "name")
        if name not in job["files"] or not path.is_file():
            raise ApiError(404, f"job {job_id} has no file {name!r}", "name")
        return FileResponse(path)

    @app.get("/jobs/{job_id}/events", response_class=StreamingResponse,
             responses={**ERRORS, 200: {"content": {"application/x-ndjson": {}},
                                        "description": "One JSON event per line"}},
             summary="The job's events as JSON lines (streamed until the job ends)")
    def job_events(job_id: str):
        state.job_or_404(job_id)

        def lines():
            for batch in state.event_batches(job_id):
                for ev in batch:
                    yield json.dumps(ev, default=str) + "\n"
        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.websocket("/ws/jobs/{job_id}")
    async def ws_job(ws: WebSocket, job_id: str):
        await ws.accept()
        if state.queue.get(job_id) is None:
            await ws.send_json({"error": f"no job with id {job_id!r}", "field": "job_id"})
            await ws.close(code=4404)
            return
        batches = state.event_batches(job_id)
        try:
            while True:
                batch = await asyncio.to_thread(next, batches, None)
                if batch is None:
                    break
                for ev in batch:
                    await ws.send_json(ev)
            await ws.close()
        except WebSocketDisconnect:
            pass

    @app.websocket("/ws")
    async def ws_all(ws: WebSocket):
        await ws.accept()
        after = state.hub.seq
        try:
            while True:
                events, after = await asyncio.to_thread(state.hub.wait_all, after, 1.0)
                for ev in events:
                    await ws.send_json(ev)
        except WebSocketDisconnect:
            pass

    @app.post("/validate", response_model=S.ValidateResult, responses=ERRORS, summary="Validate a document")
    def validate(body: S.JobRequest):
        from nodegen.kernel.plan import plan

        try:
            wf, target_ids = prepare_workflow(state.checker, body.workflow, body.set, body.targets)
        except JobInputError as e:
            raise ApiError(422, str(e), e.field) from e
        p = plan(wf.data, state.checker.registry, target_ids, state.checker.env)
        return {"valid": not p.problems, "problems": [x.to_json() for x in p.problems],
                "warnings": [x.to_json() for x in p.warnings]}

    @app.get("/nodes", summary="The node schema (what 'nodes --json' prints)")
    def nodes(category: str | None = None):
        return state.checker.schema(category)

    @app.get("/health", response_model=S.Health, summary="Is the server up, and how many jobs")
    def health():
        return {"ok": True, "version": __version__, "counts": state.queue.counts(),
                "running": state.runner.running}

    return app


def _json_query(raw: str | None, name: str, kind: type) -> Any:
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ApiError(422, f"query parameter {name!r} must be JSON: {e}", name) from e
    if not isinstance(value, kind):
        raise ApiError(422, f"query parameter {name!r} must be a JSON {kind.__name__}", name)
    return value


__all__ = ["ServerConfig", "create_app", "STATUSES"]
