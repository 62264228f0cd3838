"""The installed package is the product: nodes and the editor inside the nodegen namespace, no test
fixtures, no training code, no generic top-level module names."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, cwd=out, timeout=300)
    (found,) = out.glob("nodegen-*.whl")
    return found


@pytest.fixture(scope="module")
def wheel_names(wheel) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


def test_the_wheel_holds_the_product_under_one_name(wheel_names):
    tops = {n.split("/")[0] for n in wheel_names if not n.startswith("nodegen-")}
    assert tops == {"nodegen"}
    for must in ("nodegen/nodes/sampling.py", "nodegen/gui/mainwindow.py", "nodegen/kernel/executor.py",
                 "nodegen/kernel/workflow.schema.json", "nodegen/assets/models/nodegen-demo-shapes.safetensors"):
        assert must in wheel_names, must


def test_nothing_test_only_or_training_only_is_installed(wheel_names):
    bad = [n for n in wheel_names if "fixtures" in n or "/demo/" in n or n.startswith(("tests/", "tools/"))
           or "torchvision_fix" in n]
    assert not bad, bad


def test_the_entry_points_name_the_namespaced_modules(wheel, wheel_names):
    name = next(n for n in wheel_names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as z:
        text = z.read(name).decode()
    assert "nodegen = nodegen.cli:entry" in text
    assert "builtin = nodegen.nodes" in text
