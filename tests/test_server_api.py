"""The job server's HTTP API in-process (Starlette TestClient): jobs, results, events, and every
kind of bad request answered with a 4xx JSON error naming the field."""

from __future__ import annotations

import io
import json
import time

import pytest
from fastapi.testclient import TestClient

from nodegen.server.app import ServerConfig, create_app
from tests.support.jobs import light_workflow, tiny_png


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    tiny_png(root / "in")
    return root


@pytest.fixture(scope="module")
def client(folders):
    app = create_app(ServerConfig(out_dir=str(folders / "out"), input_dir=str(folders / "in"),
                                  max_body=200_000))
    with TestClient(app) as c:
        yield c


def wait_done(client, job_id, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        job = client.get(f"/jobs/{job_id}", params={"wait": min(left, 10.0)}).json()  # a long poll
        if job["status"] in ("done", "failed", "cancelled"):
            return job
    raise AssertionError(f"job {job_id} did not finish")


def assert_error(resp, status, field):
    assert resp.status_code in (status if isinstance(status, tuple) else (status,)), resp.text
    body = resp.json()
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in resp.text
    if field is not None:
        assert body["field"] == field, body
    return body


def test_a_job_runs_and_its_results_carry_provenance(client, folders):
    r = client.post("/jobs", json={"workflow": light_workflow(), "set": {"Save.filename_prefix": "first"}})
    assert r.status_code == 201, r.text
    job = wait_done(client, r.json()["id"])
    assert job["status"] == "done" and job["files"] == ["first_00001.png"] and job["attempts"] == 1
    assert job["set"] == {"Save.filename_prefix": "first"} and set(job["timings"]) == {"1", "2", "3"}
    assert (folders / "out" / "jobs" / job["id"] / "first_00001.png").is_file()
    res = client.get(f"/jobs/{job['id']}/results").json()
    (f,) = res["files"]
    assert f["values"]["inputs"]["3"]["filename_prefix"] == "first"
    png = client.get(f["url"])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    events = [json.loads(line) for line in client.get(f"/jobs/{job['id']}/events").text.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and kinds[-2:] == ["run_finished", "outputs"]
    assert events[-1] == {"event": "outputs", "paths": ["first_00001.png"], "status": "done"}
    # the queue keeps them: a server started later on the same folder replays the same events
    later = TestClient(create_app(ServerConfig(out_dir=str(folders / "out"), input_dir=str(folders / "in"))))
    replayed = later.get(f"/jobs/{job['id']}/events").text
    assert [json.loads(line) for line in replayed.splitlines()] == events
    listed = client.get("/jobs", params={"status": "done"}).json()
    assert job["id"] in [j["id"] for j in listed["jobs"]] and listed["counts"]["done"] >= 1


def test_identical_jobs_each_get_their_files(client):
    ids = [client.post("/jobs", json={"workflow": light_workflow()}).json()["id"] for _ in range(2)]
    jobs = [wait_done(client, i) for i in ids]
    assert [j["files"] for j in jobs] == [["light_00001.png"], ["light_00001.png"]]
    assert set(jobs[1]["timings"]) == {"3"}  # loading and inverting came from the cache


def test_png_upload_runs_its_embedded_workflow(client, folders):
    job = wait_done(client, client.post("/jobs", json={"workflow": light_workflow()}).json()["id"])
    png = (folders / "out" / "jobs" / job["id"] / job["files"][0]).read_bytes()
    r = client.post("/jobs/png", content=png, headers={"content-type": "image/png"},
                    params={"set": json.dumps({"Save.filename_prefix": "again"})})
    assert r.status_code == 201, r.text
    assert wait_done(client, r.json()["id"])["files"] == ["again_00001.png"]


def test_validate_nodes_health_and_openapi(client):
    ok = client.post("/validate", json={"workflow": light_workflow()}).json()
    assert ok == {"valid": True, "problems": [], "warnings": []}
    bad = client.post("/validate", json={"workflow": light_workflow(), "set": {"Source.image": "nope.png"}})
    assert bad.status_code == 200 and not bad.json()["valid"]
    assert bad.json()["problems"][0]["input"] == "image"
    schema = client.get("/nodes").json()
    assert "SaveImage" in schema["nodes"] and "types" in schema
    assert client.get("/health").json()["ok"] is True
    api = client.get("/openapi.json").json()
    assert {"/jobs", "/jobs/png", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/validate"} <= set(api["paths"])


@pytest.mark.parametrize("request_kwargs, status, field", [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "body"),
    # nested deeper than Python's JSON reader recurses
    ({"content": b'{"workflow": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
      "headers": {"content-type": "application/json"}}, 400, "body"),
    ({"json": {"set": {}}}, 422, "workflow"),
    ({"json": {"workflow": light_workflow(), "colour": 1}}, 422, "colour"),
    ({"json": {"workflow": "graphs/txt2img.json"}}, 422, "workflow"),
    ({"json": {"workflow": {"format": "something-else"}}}, 422, "workflow"),
    ({"json": {"workflow": light_workflow(), "set": {"Nope.image": "x"}}}, 422, "set.Nope.image"),
    ({"json": {"workflow": light_workflow(), "set": {"Source.bogus": 1}}}, 422, "set.Source.bogus"),
    ({"json": {"workflow": light_workflow(), "set": {"Save.filename_prefix": 5}}}, 422,
     "set.Save.filename_prefix"),
    ({"json": {"workflow": light_workflow(), "targets": ["Nowhere"]}}, 422, "targets.0"),
    ({"json": {"workflow": light_workflow(), "set": "Source.image=x"}}, 422, "set"),
])
def test_malformed_submissions_get_4xx_naming_the_field(client, request_kwargs, status, field):
    body = assert_error(client.post("/jobs", **request_kwargs), status, field)
    assert all(e["field"] == field or not field.startswith("body") for e in body.get("errors", []))


def test_other_bad_requests(client):
    assert_error(client.get("/jobs/doesnotexist"), 404, "job_id")
    assert_error(client.get("/jobs", params={"status": "sleeping"}), 422, "status")
    assert_error(client.get("/jobs", params={"limit": 0}), 422, "limit")
    assert_error(client.post("/jobs/png", content=b"GIF89a", headers={"content-type": "image/png"}), 422, "body")
    buf = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (2, 2)).save(buf, format="PNG")
    assert_error(client.post("/jobs/png", content=buf.getvalue(), headers={"content-type": "image/png"}),
                 422, "body")
    assert_error(client.post("/jobs/png", content=buf.getvalue(), params={"set": "{oops"}), 422, "set")
    assert_error(client.get("/no/such/endpoint"), 404, None)


def test_oversized_bodies_are_refused(client):
    big = light_workflow()
    big["metadata"] = {"description": "x" * 300_000}
    body = assert_error(client.post("/jobs", json=big), 413, "body")
    assert "200000" in body["error"]

    def chunks():  # no Content-Length: counted while it arrives
        for _ in range(30):
            yield b"x" * 10_000
    assert_error(client.post("/jobs/png", content=chunks()), 413, "body")


def test_file_names_must_stay_inside_the_folders(client, folders, tmp_path, monkeypatch):
    secret = tiny_png(tmp_path, "secret.png")
    for name in (str(secret), "../secret.png", "../../etc/passwd", "~/x.png", "C:\\x.png"):
        body = assert_error(client.post("/jobs", json={"workflow": light_workflow(name)}), 403,
                            "workflow.nodes.1.inputs.image")
        assert "Source" in body["error"]
    monkeypatch.chdir(tmp_path)  # in the working directory, which is not the input folder: refused
    assert_error(client.post("/jobs", json={"workflow": light_workflow(), "set": {"Source.image": "secret.png"}}),
                 (403, 422), "set.Source.image")
    model = light_workflow()
    model["nodes"]["9"] = {"type": "CheckpointLoader", "inputs": {"ckpt_name": "../../x.safetensors"}}
    assert_error(client.post("/jobs", json={"workflow": model}), 403, "workflow.nodes.9.inputs.ckpt_name")
    job = wait_done(client, client.post("/jobs", json={"workflow": light_workflow()}).json()["id"])
    for name in ("../../jobs.sqlite3", "..%2F..%2Fjobs.sqlite3", "/etc/passwd"):
        r = client.get(f"/jobs/{job['id']}/files/{name}")
        assert r.status_code in (403, 404) and "error" in r.json()


def test_token_is_required_when_set(folders):
    app = create_app(ServerConfig(out_dir=str(folders / "out-token"), input_dir=str(folders / "in"),
                                  token="s3cret"))
    c = TestClient(app)  # no lifespan: nothing runs, the checks still apply
    body = assert_error(c.get("/health"), 401, "Authorization")
    assert "token" in body["error"] and "Bearer" in body["error"]
    assert_error(c.get("/health", headers={"Authorization": "Bearer nope"}), 401, "Authorization")
    assert c.get("/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/health", headers={"X-Nodegen-Token": "s3cret"}).status_code == 200
    assert c.get("/health", params={"token": "s3cret"}).status_code == 200
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as info, c.websocket_connect("/ws") as ws:
        ws.receive_json()
    assert info.value.code == 4401


def test_queued_jobs_can_be_cancelled(folders):
    app = create_app(ServerConfig(out_dir=str(folders / "out-cancel"), input_dir=str(folders / "in")))
    c = TestClient(app)  # no lifespan: the runner does not start, jobs stay queued
    job_id = c.post("/jobs", json={"workflow": light_workflow()}).json()["id"]
    assert c.get(f"/jobs/{job_id}").json()["status"] == "queued"
    t0 = time.monotonic()
    assert c.get(f"/jobs/{job_id}", params={"wait": 0.3}).json()["status"] == "queued"  # a long poll
    assert time.monotonic() - t0 >= 0.25  # held until its time ran out: the job did not end
    assert_error(c.get(f"/jobs/{job_id}", params={"wait": -1}), 422, "wait")
    assert c.post(f"/jobs/{job_id}/cancel").json() == {"id": job_id, "status": "cancelled"}
    assert c.get(f"/jobs/{job_id}").json()["status"] == "cancelled"
    assert_error(c.post("/jobs/nope/cancel"), 404, "job_id")


def test_submit_and_wait_in_one_request(client, folders):
    """``POST /jobs?wait=S`` answers 201 once the job has ended, with the job as GET shows it."""
    r = client.post("/jobs", params={"wait": 30}, json={"workflow": light_workflow(),
                                                        "set": {"Save.filename_prefix": "held"}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "done" and job["files"] == ["held_00001.png"] and "3" in job["timings"]
    assert job == client.get(f"/jobs/{job['id']}").json()
    # a PNG that embeds a workflow, the same way
    png = (folders / "out" / "jobs" / job["id"] / "held_00001.png").read_bytes()
    r = client.post("/jobs/png", content=png, headers={"Content-Type": "image/png"},
                    params={"wait": 30, "set": json.dumps({"Save.filename_prefix": "heldpng"})})
    assert r.status_code == 201 and r.json()["files"] == ["heldpng_00001.png"], r.text
    # a refused job leaves no waiter behind, and names the field as without wait
    assert_error(client.post("/jobs", params={"wait": 30}, json={"workflow": light_workflow(),
                                                                 "set": {"Source.nope": 1}}), 422, "set.Source.nope")
    assert_error(client.post("/jobs", params={"wait": -1}, json={"workflow": light_workflow()}), 422, "wait")
    assert client.app.state.nodegen.waiters.waiting == 0


def test_submit_and_wait_answers_when_the_wait_runs_out(folders):
    app = create_app(ServerConfig(out_dir=str(folders / "out-held"), input_dir=str(folders / "in")))
    c = TestClient(app)  # no lifespan: the runner does not start, jobs stay queued
    t0 = time.monotonic()
    r = c.post("/jobs", params={"wait": 0.3}, json={"workflow": light_workflow()})
    assert r.status_code == 201 and r.json()["status"] == "queued", r.text
    assert time.monotonic() - t0 >= 0.25  # held until its time ran out
    assert r.json() == c.get(f"/jobs/{r.json()['id']}").json()  # the whole job, as GET shows it
    assert app.state.nodegen.waiters.waiting == 0
    assert set(c.get("/openapi.json").json()["paths"]["/jobs"]["post"]["responses"]["201"]["content"]
               ["application/json"]["schema"]["anyOf"][1]["$ref"].split("/")[-1:]) == {"Job"}


def test_cancelling_a_queued_job_answers_its_long_polls_at_once(folders):
    """A client waiting for a queued job hears of its cancel at once, not when its wait runs out."""
    from concurrent.futures import ThreadPoolExecutor

    app = create_app(ServerConfig(out_dir=str(folders / "out-cancel-wait"), input_dir=str(folders / "in")))
    c = TestClient(app)  # no lifespan: the runner does not start, jobs stay queued
    job_id = c.post("/jobs", json={"workflow": light_workflow()}).json()["id"]
    waiters = app.state.nodegen.waiters
    with ThreadPoolExecutor(1) as pool:
        t0 = time.monotonic()
        polled = pool.submit(lambda: c.get(f"/jobs/{job_id}", params={"wait": 30}).json())
        while not waiters.waiting:  # the long poll is held
            assert not polled.done(), polled.result()
            time.sleep(0.01)
        assert c.post(f"/jobs/{job_id}/cancel").json()["status"] == "cancelled"
        job = polled.result(timeout=10)
    assert job["status"] == "cancelled" and time.monotonic() - t0 < 10
    assert job == c.get(f"/jobs/{job_id}").json()
    assert waiters.waiting == 0


def _rss_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))
    except OSError:
        return None


def _wait_all(client, ids: list[str], timeout: float) -> None:
    """Every job ended (eight threads submit at once: the queue's order is not the list's)."""
    deadline = time.monotonic() + timeout
    for job_id in ids:
        wait_done(client, job_id, timeout=max(1.0, deadline - time.monotonic()))


def test_a_flood_of_1000_jobs_is_accepted_run_and_recorded(client, folders):
    """1,000 jobs submitted at once by 8 clients: all accepted (their acceptances share fsyncs),
    all run and recorded, and the server's memory stays flat (events of finished jobs leave
    memory; the queue keeps them)."""
    from concurrent.futures import ThreadPoolExecutor

    from nodegen.server.hub import KEEP_FINISHED

    def submit(i: int) -> str:
        r = client.post("/jobs", json={"workflow": light_workflow(), "set": {"Save.filename_prefix": f"f{i}"}})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    hub = client.app.state.nodegen.hub
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(submit, range(200)))
        _wait_all(client, ids, timeout=120)
        rss_200 = _rss_mib()
        ids += list(pool.map(submit, range(200, 1000)))
    assert len(set(ids)) == 1000
    _wait_all(client, ids, timeout=300)
    assert hub.held <= KEEP_FINISHED + 1
    rss_1000 = _rss_mib()
    if rss_200 is not None and rss_1000 is not None:
        assert rss_1000 - rss_200 < 40, f"memory grew from {rss_200:.0f} to {rss_1000:.0f} MiB"
    jobs = {j["id"]: j for j in client.get("/jobs", params={"limit": 1000, "offset": 0}).json()["jobs"]}
    jobs.update({j["id"]: j for j in client.get("/jobs", params={"limit": 1000, "offset": 1000}).json()["jobs"]})
    for i, job_id in enumerate(ids):
        assert jobs[job_id]["status"] == "done" and jobs[job_id]["files"] == [f"f{i}_00001.png"]
    written = list((folders / "out" / "jobs").glob("*/f[0-9]*_*.png"))
    assert len(written) == 1000
