"""A ControlNet loaded first in a fresh process (ComfyUI's controlnet example runs ControlNetLoader
before the checkpoint loader): the torchvision repair must come before diffusers' imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nodegen

DEMO_CANNY = Path(nodegen.__file__).parent / "assets" / "models" / "controlnet" / "nodegen-demo-canny.safetensors"


def test_controlnet_loads_first_in_a_fresh_process():
    code = ("import sys; from nodegen.models.control_files import load_control; "
            "print(type(load_control(sys.argv[1])).__name__)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code, str(DEMO_CANNY)], capture_output=True, text=True,
                          env=env, cwd=Path(nodegen.__file__).parent.parent, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
