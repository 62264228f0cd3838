"""nodegen.client.Client against a real server (uvicorn in a thread): the documented contract."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
import uvicorn

from nodegen.client import Client, ClientError
from nodegen.server.app import ServerConfig, create_app
from tests.support.jobs import light_workflow, slow_workflow, tiny_png


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("client")
    tiny_png(root / "in")
    app = create_app(ServerConfig(out_dir=str(root / "out"), input_dir=str(root / "in"), token="tok"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_submit_wait_images_events(url, tmp_path):
    c = Client(url, token="tok")
    job = c.submit(light_workflow(), set={"Save.filename_prefix": "cl"})
    assert isinstance(job, str)
    done = c.wait(job, timeout=30)
    assert done["status"] == "done" and c.status(job)["status"] == "done"
    (img,) = c.images(job)
    assert img.size == (4, 4) and img.getpixel((0, 0)) == (55, 225, 195)
    kinds = [e["event"] for e in c.events(job)]
    assert kinds[0] == "run_started" and kinds[-1] == "outputs"
    # a path to a .json and a path to a PNG that embeds a workflow
    path = tmp_path / "light.json"
    path.write_text(json.dumps(light_workflow()))
    from_json = c.wait(c.submit(str(path)), timeout=30)
    png = tmp_path / "made.png"
    png.write_bytes(c.files(from_json["id"])[0][1])
    from_png = c.wait(c.submit(png, set={"Save.filename_prefix": "png"}), timeout=30)
    assert from_png["status"] == "done" and from_png["files"] == ["png_00001.png"]
    assert c.cancel(job)["status"] == "done"  # a finished job stays as it was


def test_run_submits_and_waits(url, tmp_path):
    c = Client(url, token="tok")
    job = c.run(light_workflow(), set={"Save.filename_prefix": "ran"}, timeout=30)
    assert job["status"] == "done" and job["files"] == ["ran_00001.png"]
    assert c.status(job["id"]) == job
    png = tmp_path / "ran.png"
    png.write_bytes(c.files(job["id"])[0][1])
    assert c.run(png, set={"Save.filename_prefix": "ranpng"}, timeout=30)["files"] == ["ranpng_00001.png"]
    with pytest.raises(ClientError) as info:
        c.run(light_workflow(), set={"Source.nope": 1})
    assert info.value.status == 422 and info.value.field == "set.Source.nope"
    # longer than one held request: run goes on waiting with long polls, and times out as wait does
    slow = slow_workflow(size=1024)
    with pytest.raises(TimeoutError):
        c.run(slow, timeout=0.001)
    import nodegen.client as client_module

    held, client_module.LONG_POLL = client_module.LONG_POLL, 0.05
    try:
        assert c.run(slow, timeout=60)["status"] == "done"
    finally:
        client_module.LONG_POLL = held


def test_errors_name_the_field(url):
    c = Client(url, token="tok")
    with pytest.raises(ClientError) as info:
        c.submit(light_workflow(), set={"Source.nope": 1})
    assert info.value.status == 422 and info.value.field == "set.Source.nope"
    with pytest.raises(ClientError) as info:
        Client(url).status("x")
    assert info.value.status == 401 and "token" in info.value.error
    slow = c.submit(slow_workflow(size=1024))
    with pytest.raises(TimeoutError):
        c.wait(slow, timeout=0)
    assert c.wait(slow, timeout=60)["status"] == "done"


def test_importing_the_client_does_not_import_torch():
    code = "import sys, nodegen.client; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=".")


def test_a_kept_alive_connection_the_server_closed_is_replaced(url):
    import socket

    c = Client(url, token="tok")
    assert c.health()["ok"]
    conn = c._local.conn
    conn.sock.shutdown(socket.SHUT_RDWR)  # as when the server drops an idle connection
    assert c.health()["ok"] and c._local.conn is not conn
    assert c.status(c.submit(light_workflow()))["status"] in ("queued", "running", "done")
