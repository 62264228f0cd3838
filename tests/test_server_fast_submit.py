"""``POST /jobs``'s fast path (nodegen.server.fast_submit): it answers exactly the valid submits,
the same way the FastAPI route does, and hands everything else to FastAPI with the body intact."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse

from nodegen.server import schemas as S
from nodegen.server.app import ServerConfig, create_app
from nodegen.server.fast_submit import SubmitFastPath
from tests.support.jobs import light_workflow, tiny_png

BODY = json.dumps({"workflow": {"format": "nodegen/workflow", "nodes": {}}, "set": {"A.b": 1}}).encode()


class Refused(Exception):
    pass


def call(scope_changes: dict, messages: list[dict]):
    """Run the middleware on one request; returns (what the app behind saw, what submit saw, sent)."""
    behind: list = []
    submitted: list = []

    async def app(scope, receive, send):
        got = []
        while True:
            m = await receive()
            got.append(m)
            if not m.get("more_body"):
                break
        behind.append(b"".join(m.get("body", b"") for m in got))
        await JSONResponse({"from": "fastapi"})(scope, receive, send)

    async def submit(request, wait):
        submitted.append((request, wait))
        if request.set == {"A.b": "refuse"}:
            raise Refused("no")
        return JSONResponse({"from": "fast"}, status_code=201)

    mw = SubmitFastPath(app, model=S.JobRequest, submit=submit, refused=Refused,
                        refusal=lambda e: JSONResponse({"error": str(e), "field": "x"}, status_code=422))
    scope = {"type": "http", "method": "POST", "path": "/jobs", "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json")], **scope_changes}
    pending = list(messages)
    sent: list = []

    async def receive():
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(m):
        sent.append(m)

    asyncio.run(mw(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    return behind, submitted, (status, json.loads(body) if body else None)


def one(body: bytes = BODY) -> list[dict]:
    return [{"type": "http.request", "body": body, "more_body": False}]


@pytest.mark.parametrize("query, wait", [(b"", 0.0), (b"wait=2.500", 2.5), (b"wait=0", 0.0), (b"wait=300", 300.0)])
def test_valid_submits_are_answered_without_fastapi(query, wait):
    behind, submitted, answer = call({"query_string": query}, one())
    assert behind == [] and answer == (201, {"from": "fast"})
    ((request, got_wait),) = submitted
    assert got_wait == wait and request.set == {"A.b": 1} and request.workflow["nodes"] == {}


def test_a_body_in_pieces_is_read_whole():
    half = len(BODY) // 2
    behind, submitted, answer = call({}, [{"type": "http.request", "body": BODY[:half], "more_body": True},
                                          {"type": "http.request", "body": BODY[half:], "more_body": False}])
    assert behind == [] and len(submitted) == 1 and answer[0] == 201


@pytest.mark.parametrize("changes, body", [
    ({"query_string": b"wait=abc"}, BODY),  # FastAPI refuses these, naming the field
    ({"query_string": b"wait=-1"}, BODY),
    ({"query_string": b"wait=301"}, BODY),
    ({"query_string": b"wait=1&extra=2"}, BODY),
    ({"query_string": b"token=x"}, BODY),
    ({"headers": [(b"content-type", b"text/plain")]}, BODY),
    ({"headers": []}, BODY),
    ({}, b"{not json"),
    ({}, json.dumps({"set": {}}).encode()),  # no workflow
    ({}, json.dumps({"workflow": {}, "colour": 1}).encode()),  # a field the model forbids
    ({"root_path": "/api"}, BODY),
])
def test_everything_else_goes_to_fastapi_with_its_body(changes, body):
    behind, submitted, answer = call(changes, one(body))
    assert submitted == [] and behind == [body] and answer == (200, {"from": "fastapi"})


@pytest.mark.parametrize("changes", [{"path": "/jobs/png"}, {"method": "GET"}, {"type": "websocket"}])
def test_other_routes_are_not_read(changes):
    behind, submitted, _ = call(changes, one())
    assert submitted == [] and behind == [BODY]  # the app behind read the original messages


def test_refusals_are_answered_and_a_gone_client_gets_nothing():
    refused = json.dumps({"workflow": {}, "set": {"A.b": "refuse"}}).encode()
    assert call({}, one(refused))[2] == (422, {"error": "no", "field": "x"})
    behind, submitted, answer = call({}, [])  # the client disconnected before its body came
    assert behind == submitted == [] and answer == (None, None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    tiny_png(root / "in")
    app = create_app(ServerConfig(out_dir=str(root / "out"), input_dir=str(root / "in")))
    with TestClient(app) as c:
        yield c


def test_both_paths_answer_alike(server):
    """The same request through the fast path and through FastAPI's route (an extra query
    parameter sends it there): the same answers, ids and times apart."""
    doc = {"workflow": light_workflow(), "set": {"Save.filename_prefix": "alike"}}
    fast = server.post("/jobs", json=doc, params={"wait": 30})
    routed = server.post("/jobs", json=doc, params={"wait": 30, "via": "fastapi"})
    assert fast.status_code == routed.status_code == 201
    varying = ("id", "submitted", "started", "finished", "seconds", "timings")
    a, b = ({k: v for k, v in r.json().items() if k not in varying} for r in (fast, routed))
    assert a == b and a["status"] == "done" and a["files"] == ["alike_00001.png"]
    assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
    for bad, field in (({"workflow": light_workflow(), "set": {"Nope.image": "x"}}, "set.Nope.image"),
                       ({"workflow": light_workflow("../x.png")}, "workflow.nodes.1.inputs.image")):
        fast, routed = server.post("/jobs", json=bad), server.post("/jobs", json=bad, params={"via": "fastapi"})
        assert fast.status_code == routed.status_code and fast.status_code in (403, 422)
        assert fast.json() == routed.json() and fast.json()["field"] == field


def test_the_token_and_the_size_limit_apply_to_the_fast_path(tmp_path):
    tiny_png(tmp_path / "in")
    app = create_app(ServerConfig(out_dir=str(tmp_path / "out"), input_dir=str(tmp_path / "in"),
                                  token="s3cret", max_body=5_000))
    c = TestClient(app)  # no lifespan: accepted jobs stay queued
    doc = {"workflow": light_workflow()}
    assert c.post("/jobs", json=doc).status_code == 401
    assert c.post("/jobs", json=doc, headers={"Authorization": "Bearer s3cret"}).status_code == 201
    big = {"workflow": {**light_workflow(), "metadata": {"note": "x" * 6_000}}}
    r = c.post("/jobs", json=big, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 413 and r.json()["field"] == "body"
