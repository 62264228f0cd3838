"""The job server with the demo model: one warm engine across jobs (a seed-only job runs the
sampler and what follows it), and WebSocket events that are the objects ``run --json`` prints."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from nodegen.cli import main
from nodegen.server.app import ServerConfig, create_app

GRAPH = "graphs/txt2img.json"
FAST = {"Sampler.steps": 4}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    out = tmp_path_factory.mktemp("server-engine")
    with TestClient(create_app(ServerConfig(out_dir=str(out), device="cpu"))) as c:
        yield c


def doc() -> dict:
    with open(GRAPH, encoding="utf-8") as f:
        return json.load(f)


def wait_done(client, job_id, timeout=120.0) -> dict:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        job = client.get(f"/jobs/{job_id}", params={"wait": min(left, 10.0)}).json()  # a long poll
        if job["status"] in ("done", "failed", "cancelled"):
            return job
    raise AssertionError(f"job {job_id} did not finish")


def test_websocket_events_are_what_run_json_prints(client, tmp_path, capsys):
    assert main(["run", GRAPH, "--json", "--out", str(tmp_path), "--set", "Sampler.steps=4",
                 "--set", "Sampler.seed=11"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    job_id = client.post("/jobs", json={"workflow": doc(), "set": {**FAST, "Sampler.seed": 11}}).json()["id"]
    received = []
    with client.websocket_connect(f"/ws/jobs/{job_id}") as ws:
        while True:
            ev = ws.receive_json()
            received.append(ev)
            if ev["event"] == "outputs":
                break
    assert [(e["event"], e.get("node_id")) for e in received] == [(e["event"], e.get("node_id")) for e in printed]
    for mine, theirs in zip(received, printed, strict=True):
        assert set(mine) == set(theirs), (mine, theirs)
        if mine["event"] in ("node_started", "node_cached", "node_finished"):
            assert (mine["type"], mine["title"]) == (theirs["type"], theirs["title"])
    assert [p.rsplit("/", 1)[-1] for p in printed[-1]["paths"]] == received[-1]["paths"]
    assert received[-1]["status"] == "done" and printed[-1]["status"] == "ok"
    ours = client.get(f"/jobs/{job_id}/files/{received[-1]['paths'][0]}").content
    assert ours == (tmp_path / printed[-1]["paths"][0].rsplit("/", 1)[-1]).read_bytes()


def test_the_warm_engine_reruns_only_what_changed(client):
    first = wait_done(client, client.post("/jobs", json={"workflow": doc(), "set": {**FAST, "Sampler.seed": 1}})
                      .json()["id"])
    second = wait_done(client, client.post("/jobs", json={"workflow": doc(), "set": {**FAST, "Sampler.seed": 2}})
                       .json()["id"])
    same = wait_done(client, client.post("/jobs", json={"workflow": doc(), "set": {**FAST, "Sampler.seed": 2}})
                     .json()["id"])
    assert first["status"] == second["status"] == same["status"] == "done"
    assert set(second["timings"]) == {"5", "6", "7"}  # sampler, decode, save
    assert set(same["timings"]) == {"7"}  # only the save: a job always gets its files
    files = [client.get(f"/jobs/{j['id']}/files/{j['files'][0]}").content for j in (first, second, same)]
    assert files[0] != files[1] and files[1] == files[2]


def test_a_running_job_can_be_cancelled(client):
    job_id = client.post("/jobs", json={"workflow": doc(), "set": {"Sampler.steps": 400}}).json()["id"]
    with client.websocket_connect(f"/ws/jobs/{job_id}") as ws:
        while ws.receive_json()["event"] != "node_progress":
            pass
        assert client.post(f"/jobs/{job_id}/cancel").json()["status"] == "running"
        while ws.receive_json()["event"] != "outputs":
            pass
    job = wait_done(client, job_id)
    assert job["status"] == "cancelled" and job["files"] == []


def test_the_server_does_not_make_previews_it_would_drop(client):
    """Its events go out as JSON without images: the samplers skip their per-step previews."""
    events = client.app.state.nodegen.engine.events
    assert events.active and not events.wants_previews


def test_a_long_poll_answers_the_job_as_recorded(client):
    """The runner hands the finished job to the waiting requests: the same record a read gives."""
    job_id = client.post("/jobs", json={"workflow": doc(), "set": {**FAST, "Sampler.seed": 23}}).json()["id"]
    job = client.get(f"/jobs/{job_id}", params={"wait": 60}).json()
    assert job["status"] == "done" and job["files"] and set(job["timings"]) >= {"5"}
    assert job == client.get(f"/jobs/{job_id}").json()
