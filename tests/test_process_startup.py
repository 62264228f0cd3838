"""A nodegen process of its own: lean imports (no peft, no every-model package inits) that still
load and run the demo model, and a thread policy that holds up on a busy machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nodegen.runtime import threads

ROOT = Path(__file__).resolve().parents[1]

LEAN_RUN = r"""
import json, sys
from nodegen.cli.process import setup_process
setup_process()
from nodegen.cli import main
code = main(["run", sys.argv[1], "--out", sys.argv[2], "--threads", "1",
             "--set", "Sampler.steps=2"])
loaded = {m: m in sys.modules for m in ("peft", "scipy.stats", "diffusers.models.unets.unet_1d",
                                        "diffusers.models.transformers.transformer_sd3", "transformers")}
import diffusers.loaders, diffusers.utils
import transformers  # hidden only while diffusers' modules loaded: importable afterwards
loaded["FromSingleFileMixin"] = "FromSingleFileMixin" in dir(diffusers.loaders)  # diffusers' tables intact
from diffusers.models.transformers import SD3Transformer2DModel  # a deferred package still works
from diffusers.models.unets import UNet2DConditionModel
import os
print(json.dumps({"code": code, "loaded": loaded, "peft_backend": diffusers.utils.USE_PEFT_BACKEND,
                  "wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                  "sd3": SD3Transformer2DModel.__name__, "unet": UNet2DConditionModel.__name__}))
"""


def test_a_lean_process_runs_the_demo_graph_without_the_unused_imports(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("NODEGEN_FULL_IMPORTS", None)
    out = subprocess.run([sys.executable, "-c", LEAN_RUN, str(ROOT / "graphs" / "txt2img.json"),
                          str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    assert list(tmp_path.glob("*.png")), "no image written"
    assert report["loaded"] == {"peft": False, "scipy.stats": False,
                                "diffusers.models.unets.unet_1d": False,
                                "diffusers.models.transformers.transformer_sd3": False,
                                "transformers": False, "FromSingleFileMixin": True}
    assert report["peft_backend"] is False
    assert report["wait_policy"] == "PASSIVE"
    assert (report["sd3"], report["unet"]) == ("SD3Transformer2DModel", "UNet2DConditionModel")


def test_the_library_keeps_full_imports_unless_a_nodegen_process_enabled_them():
    from nodegen.compat import lean_imports

    if lean_imports._enabled:
        pytest.skip("enabled by an earlier test in this process")
    assert lean_imports.apply() == []


def test_default_threads_follow_the_idle_cores():
    assert threads.default_threads(cores=2, load=0.1) == 2
    assert threads.default_threads(cores=2, load=1.2) == 1
    assert threads.default_threads(cores=2, load=7.0) == 1
    assert threads.default_threads(cores=16, load=3.6) == 12


def test_explicit_threads_win(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("NODEGEN_THREADS", "3")
    assert threads.requested_threads(None) == 3
    assert threads.requested_threads(2) == 2
    monkeypatch.setenv("NODEGEN_THREADS", "0")
    assert threads.requested_threads(None) is None
    with pytest.raises(ValueError):
        threads.requested_threads(0)
    monkeypatch.delenv("NODEGEN_THREADS")
    monkeypatch.setattr(threads, "own_process", False)
    assert threads.apply_threads(None) == before  # a library caller's setting is left alone
