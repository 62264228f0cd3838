"""Issue 18, nodegen workflows: generated and mutated documents go through load, validate, run,
and the validate/run/lock commands. Loading gives a workflow or a WorkflowError; validation never
raises; a run ends ok, failed or invalid (a node failure is reported, never raised), within a
time limit and with small memory limits; the commands exit 0, 1 or 2 without a traceback and
never rewrite a file they refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nodegen.cli import main
from nodegen.formats import open_any
from nodegen.kernel.workflow import WorkflowError
from tests.support.fuzzing import JSON, fuzz_settings, mutated, time_limit

ROOT = Path(__file__).resolve().parents[1]
GRAPH_SEEDS = [json.loads(p.read_text()) for p in sorted((ROOT / "graphs").glob("*.json"))]

#: Node types that run fast on the CPU without model files (the run part of the fuzzing).
CHEAP = ["Int", "Float", "Boolean", "Seed", "String", "IntMath", "FloatMath", "IntToFloat", "FloatToInt",
         "StringConcat", "StringReplace", "EmptyLatentImage", "LatentUpscale", "LatentUpscaleBy",
         "LatentFromBatch", "RepeatLatentBatch", "ImageInvert", "ImageScale", "ImageScaleBy", "ImageCrop",
         "ImageBlend", "MaskToImage", "ImageToMask", "InvertMask", "SaveImage", "PreviewImage", "LoadImage",
         "Note", "Reroute", "ImageThreshold"]
OUTPUTS = {"Int": "value", "Float": "value", "String": "value", "IntMath": "result", "FloatMath": "result",
           "EmptyLatentImage": "latent", "LoadImage": "image", "ImageInvert": "image", "ImageScale": "image",
           "ImageToMask": "mask", "MaskToImage": "image", "LatentUpscale": "latent"}


@st.composite
def documents(draw) -> dict:
    """A workflow of cheap nodes with edge-case literals and links that may be wrong."""
    n = draw(st.integers(1, 6))
    ids = [str(i) for i in range(1, n + 1)]
    nodes = {}
    for nid in ids:
        t = draw(st.sampled_from(CHEAP + ["Nope"]))
        inputs: dict = {}
        for name in draw(st.lists(st.sampled_from(
                ["value", "a", "b", "op", "width", "height", "batch_size", "image", "images", "samples",
                 "filename_prefix", "scale_by", "upscale_method", "mask", "amount", "x", "y", "text",
                 "channel", "blend_factor", "threshold", "crop"]), max_size=5, unique=True)):
            if draw(st.integers(0, 3)) == 0:
                src = draw(st.sampled_from(ids + ["99"]))
                out = draw(st.sampled_from(sorted(set(OUTPUTS.values())) + ["nope"]))
                inputs[name] = {"from": [src, out]}
            else:
                inputs[name] = draw(JSON)
        node: dict = {"type": t, "inputs": inputs}
        if draw(st.integers(0, 5)) == 0:
            node["mode"] = draw(st.sampled_from(["muted", "bypass", "normal", "x"]))
        if draw(st.integers(0, 5)) == 0:
            node["title"] = draw(st.sampled_from(["", "T" * 10000, "a\nb", "\u202e"]))
        nodes[nid] = node
    return {"format": "nodegen-workflow", "version": draw(st.sampled_from([1, 1, 1, 0])), "nodes": nodes}


def _value(draw, spec):
    """A literal for ``spec``: mostly in range (edges included), sometimes out of it."""
    w = spec.widget
    if w in ("int", "seed"):
        lo = int(spec.min) if spec.min is not None else -(2 ** 31)
        hi = int(spec.max) if spec.max is not None else 2 ** 31
        return draw(st.one_of(st.sampled_from([lo, hi, lo + 1, 0, 1]).filter(lambda v: lo <= v <= hi),
                              st.integers(lo, min(hi, lo + 200)), st.integers(lo, hi), JSON))
    if w == "float":
        lo = spec.min if spec.min is not None else -1e6
        hi = spec.max if spec.max is not None else 1e6
        return draw(st.one_of(st.floats(lo, hi, allow_nan=False), st.sampled_from([lo, hi]), JSON))
    if w == "bool":
        return draw(st.booleans())
    if w == "choice":
        options = spec.choice_list(None) if not callable(spec.choices) else ["image"]
        return draw(st.one_of(st.sampled_from(options or ["x"]), JSON)) if draw(st.integers(0, 9)) == 0 \
            else draw(st.sampled_from(options or ["x"]))
    if w == "file":
        return draw(st.sampled_from(["image", "../x.png", "/dev/zero", ""]))
    return draw(st.one_of(st.text(max_size=20), st.sampled_from(["", "pre/fix", "x" * 300, "a\nb"])))


@st.composite
def typed_documents(draw) -> dict:
    """Mostly valid workflows of cheap nodes: literals per each input's rules, links between
    outputs and inputs of compatible types (so that nodes do run)."""
    from nodegen.kernel.registry import default_registry
    from nodegen.kernel.types import compatible

    registry = default_registry()
    nodes: dict = {}
    outs: list[tuple[str, str, object]] = []  # (node id, output name, type)
    def runnable(t: str, outs: list) -> bool:  # every required link input has something to link to
        return all(any(compatible(ty, spec.type) for _n, _o, ty in outs)
                   for spec in registry[t].inputs if spec.widget is None and spec.required)

    for i in range(1, draw(st.integers(2, 7)) + 1):
        nd = registry[draw(st.sampled_from([t for t in CHEAP if runnable(t, outs)]))]
        inputs: dict = {}
        for spec in nd.inputs:
            fits = [(nid, o, t) for nid, o, t in outs if compatible(t, spec.type)]
            if fits and (spec.widget is None or draw(st.integers(0, 4)) == 0):
                nid, o, _t = draw(st.sampled_from(fits))
                inputs[spec.name] = {"from": [nid, o]}
            elif spec.widget is not None and (spec.required or draw(st.booleans())):
                inputs[spec.name] = _value(draw, spec)
        nodes[str(i)] = {"type": nd.type, "inputs": inputs}
        outs += [(str(i), o.name, o.type) for o in nd.outputs]
    return {"format": "nodegen-workflow", "version": 1, "nodes": nodes}


@pytest.fixture()
def env(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.mktemp("fuzz")
    (base / "input").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), "uint8")).save(base / "input" / "image", format="PNG")
    monkeypatch.setenv("NODEGEN_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("NODEGEN_LOG_DIR", str(base / "logs"))
    monkeypatch.setenv("NODEGEN_MAX_MEMORY", str(256 << 20))
    monkeypatch.setenv("NODEGEN_MAX_TEXT", "20000")
    monkeypatch.setenv("NODEGEN_MAX_IMAGE_PIXELS", str(1 << 22))
    from nodegen.runtime.engine import Engine

    return Engine(output_dir=base / "out", input_dir=base / "input", device="cpu"), base


def _load_validate_run(engine, doc) -> None:
    with time_limit(30):
        try:
            wf = open_any(doc)
        except WorkflowError:
            return
        result = engine.executor.run(wf.data, list(wf.data["nodes"]) or None)
        assert result.status in ("ok", "failed", "invalid"), result.status


@settings(fuzz_settings(120), suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=st.one_of(documents(), typed_documents(), typed_documents()))
def test_generated_workflows_load_validate_and_run(env, doc):
    _load_validate_run(env[0], doc)


@settings(fuzz_settings(120), suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=mutated(GRAPH_SEEDS))
def test_mutated_example_graphs_load_and_validate(env, doc):
    from nodegen.kernel.plan import plan

    with time_limit(30):
        try:
            wf = open_any(doc)
        except WorkflowError:
            return
        plan(wf.data, env[0].registry, None, env[0].env)


@settings(fuzz_settings(30), suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=st.one_of(documents(), typed_documents(), mutated(GRAPH_SEEDS[:3])), command=st.sampled_from(["validate", "run", "lock"]),
       garble=st.one_of(st.none(), st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=4))))
def test_commands_exit_cleanly(env, capsys, doc, command, garble):
    _engine, base = env
    path = base / "wf.json"
    text = json.dumps(doc).encode()
    if garble is not None:  # damage the bytes too: broken JSON, bad UTF-8
        at, junk = garble
        text = text[:at] + junk + text[at:]
    path.write_bytes(text)
    args = [command, str(path), "--input", str(base / "input")]
    if command == "run":
        args += ["--out", str(base / "out")]
    with time_limit(60):
        code = main(args)
    err = capsys.readouterr().err
    assert code in (0, 1, 2) and "Traceback" not in err, err[-3000:]
    if code == 2 and command == "lock":
        assert path.read_bytes() == text  # a refused file is never rewritten


def test_found_by_fuzzing_a_malformed_link_is_refused_not_raised():
    """{"from": ""} on a literal input crashed the executor (IndexError) before the plan's problems
    were reported."""
    from nodegen.kernel.executor import Executor
    from nodegen.kernel.registry import default_registry

    doc = {"format": "nodegen-workflow", "version": 1,
           "nodes": {"1": {"type": "Int", "inputs": {}}, "2": {"type": "Int", "inputs": {"value": {"from": ""}}}}}
    result = Executor(default_registry()).run(doc, ["1", "2"])
    assert result.status == "invalid" and "invalid_link" in [p.code for p in result.problems]
