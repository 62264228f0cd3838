"""The README stays true: its node list matches the registry, its commands are what CI runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("update_readme_nodes", ROOT / "tools/update_readme_nodes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_node_list_is_current():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _tool().render(text) == text, "run: python tools/update_readme_nodes.py"


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci/run").read_text()
    assert "<!-- ci:install -->" in ci and "<!-- ci:test -->" in ci
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch==2.13.0" in readme and "python main.py run graphs/txt2img.json" in readme
