"""Listing node types imports no torch: the registry, ``nodes``, ``validate`` and the job server's app
are built from node schemas alone, and torch (1.3 s and more) loads when the first node runs.

Each check runs in a fresh interpreter (this test process has torch loaded already) and reports which
of the heavy packages ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nodegen.kernel.lazy import lazy_import

ROOT = Path(__file__).resolve().parents[1]

#: Packages that listing node types must not import.
HEAVY = ("torch", "diffusers", "transformers", "spandrel", "safetensors", "PIL", "numpy")


def _heavy_after(code: str, tmp_path: Path) -> dict:
    """Run ``code`` in a fresh interpreter (this checkout first on the path, no user nodes) and return
    ``{"heavy": [...], **whatever the code put into the dict `out`}``."""
    script = "import json, sys\nout = {}\n" + textwrap.dedent(code) + textwrap.dedent(f"""
        out["heavy"] = [m for m in {HEAVY!r} if m in sys.modules]
        print("RESULT " + json.dumps(out))
        """)
    user_nodes = tmp_path / "no_user_nodes"
    user_nodes.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "NODEGEN_NODES_PATH": str(user_nodes)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_the_built_in_registry_and_its_schema_import_no_torch(tmp_path):
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "checkpoints" / "tiny.safetensors").write_bytes(b"")
    out = _heavy_after(f"""
        from nodegen.runtime.engine import Engine
        engine = Engine(models=[{str(models)!r}])
        schema = engine.schema()
        out["count"] = len(schema["nodes"])
        out["errors"] = schema["errors"]
        inputs = {{i["name"]: i for i in schema["nodes"]["KSampler"]["inputs"]}}
        out["samplers"] = inputs["sampler_name"]["choices"]
        inputs = {{i["name"]: i for i in schema["nodes"]["CheckpointLoader"]["inputs"]}}
        out["checkpoints"] = inputs["ckpt_name"]["choices"]
        """, tmp_path)
    assert out["errors"] == []
    assert out["count"] > 100
    assert "dpmpp_2m" in out["samplers"]
    assert "tiny.safetensors" in out["checkpoints"]  # choices from the model folders still work
    assert out["heavy"] == []


def test_nodes_and_validate_commands_import_no_torch(tmp_path):
    out = _heavy_after(f"""
        import contextlib, io
        from nodegen.cli import main
        listing, report = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(listing):
            out["nodes"] = main(["nodes", "--json"])
        with contextlib.redirect_stdout(report):
            out["validate"] = main(["validate", {str(ROOT / "graphs" / "txt2img.json")!r}])
        out["types"] = len(json.loads(listing.getvalue())["nodes"])
        out["report"] = report.getvalue()
        """, tmp_path)
    assert (out["nodes"], out["validate"]) == (0, 0), out
    assert out["types"] > 100
    assert "valid" in out["report"]
    assert out["heavy"] == []


def test_building_the_server_app_imports_no_torch(tmp_path):
    out = _heavy_after(f"""
        from nodegen.server.app import ServerConfig, create_app
        app = create_app(ServerConfig(out_dir={str(tmp_path / "out")!r}))
        out["routes"] = len(app.routes)
        """, tmp_path)
    assert out["routes"] > 5
    assert out["heavy"] == []  # the job thread imports torch as the server starts listening


def test_choices_match_the_modules_that_implement_them():
    from nodegen.diffusion import align_your_steps, names, samplers, schedules

    assert names.SAMPLER_NAMES == list(samplers.SAMPLERS), "add the sampler to nodegen/diffusion/names.py"
    assert names.SCHEDULER_NAMES == schedules.SCHEDULER_NAMES, "add the scheduler to nodegen/diffusion/names.py"
    assert names.AYS_MODEL_TYPES == list(align_your_steps.NOISE_LEVELS)


def test_a_lazy_module_is_imported_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "lazy_probe_module.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_probe_module", raising=False)
    probe = lazy_import("lazy_probe_module")
    assert "lazy_probe_module" not in sys.modules
    assert "not imported yet" in repr(probe)
    assert probe.VALUE == 42
    assert "lazy_probe_module" in sys.modules
    assert "VALUE" in dir(probe)
    missing = lazy_import("lazy_probe_module_that_does_not_exist")
    with pytest.raises(ModuleNotFoundError) as info:
        missing.anything  # noqa: B018 - the first use is what imports
    assert info.value.name == "lazy_probe_module_that_does_not_exist"


def test_the_job_thread_applies_threads_before_its_first_job(tmp_path):
    import threading
    import time

    import torch
    from fastapi.testclient import TestClient

    from nodegen.server.app import ServerConfig, create_app
    from tests.support.jobs import light_workflow, tiny_png

    before = torch.get_num_threads()
    tiny_png(tmp_path / "in")
    app = create_app(ServerConfig(out_dir=str(tmp_path / "out"), input_dir=str(tmp_path / "in"), threads=2))
    seen: set[tuple[str, int]] = set()  # (thread, torch threads) while the job's nodes run
    app.state.nodegen.engine.subscribe(lambda event: seen.add((threading.current_thread().name,
                                                                torch.get_num_threads())))
    try:
        with TestClient(app) as client:
            job_id = client.post("/jobs", json={"workflow": light_workflow()}).json()["id"]
            deadline = time.monotonic() + 60
            while (job := client.get(f"/jobs/{job_id}").json())["status"] not in ("done", "failed"):
                assert time.monotonic() < deadline, job
                time.sleep(0.01)
        assert job["status"] == "done", job
        assert seen == {("nodegen-jobs", 2)}
    finally:
        torch.set_num_threads(before)
