"""TorchCompileModel (nodes/torch_compile.py, nodegen/models/compile.py; ComfyUI's
comfy_extras/nodes_torch_compile.py).

Compiling a real UNet with inductor takes minutes on a CPU, so the node's backends are mapped here
(``nodegen.models.compile.TORCH_BACKENDS``) onto a counting backend that runs the graphs torch's
dynamo captured as they are (like torch's "eager" backend): the mechanism (dynamo traces the patched
MODEL's denoiser once, reuses it, leaves the original MODEL alone, falls back on a failing compile)
is what is tested; the oracle is the unpatched MODEL's samples.
"""

from __future__ import annotations

import logging
import shutil
from types import SimpleNamespace

import pytest
import torch

from nodegen.models import compile as torch_compile
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture
from tests.support.nodes import run
from tests.support.sampling import sample

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    fx = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], "sd1")
    return SimpleNamespace(fx=fx, model=DiffusionModel.from_unet(fx.unet, "sd1", "epsilon"),
                           pos=te.encode("a photo of a cat"), neg=te.encode("blurry"))


class Graphs(list):
    fail = False  # set: the next compile (or recompile) fails


@pytest.fixture
def graphs(monkeypatch):
    """The FX graphs dynamo hands to the backend the node's "inductor" is mapped onto."""
    captured = Graphs()

    def counting(gm, example_inputs):
        if captured.fail:
            raise RuntimeError("simulated compile failure")
        captured.append(gm)
        return gm.forward

    monkeypatch.setitem(torch_compile.TORCH_BACKENDS, "inductor", counting)
    torch._dynamo.reset()
    yield captured
    torch._dynamo.reset()
    torch_compile._CACHE.clear()


def _sample(sd1, model, seed=3, size=8, steps=2):
    return sample(model, sd1.pos, sd1.neg, {"samples": torch.zeros(1, 4, size, size)}, seed=seed, steps=steps,
                  cfg=5.0, device="cpu")["samples"]


def test_compiled_model_samples_as_the_original_and_compiles_once(sd1, graphs, monkeypatch, caplog):
    made = []
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda *a, **kw: made.append(kw) or real_compile(*a, **kw))
    patched = run("TorchCompileModel", model=sd1.model, backend="inductor")["model"]
    assert patched.options["torch_compile"] == "inductor" and "torch_compile" not in sd1.model.options

    reference = _sample(sd1, sd1.model)
    assert graphs == [] and made == []  # the original MODEL runs uncompiled

    first = _sample(sd1, patched)
    torch.testing.assert_close(first, reference, rtol=1e-4, atol=1e-5)
    assert len(made) == 1 and made[0]["backend"] is torch_compile.TORCH_BACKENDS["inductor"]
    assert graphs, "dynamo captured no graph: the denoiser did not run compiled"
    fn = torch_compile.compiled_forward(sd1.fx.unet, "inductor")
    assert fn.state == "compiled"
    assert "forward" not in sd1.fx.unet.__dict__  # restored after the run

    n_graphs = len(graphs)
    second = _sample(sd1, patched, seed=4)
    assert len(made) == 1 and torch_compile.compiled_forward(sd1.fx.unet, "inductor") is fn  # reused
    assert len(graphs) == n_graphs  # torch's compiled graphs reused too (no recompile)
    torch.testing.assert_close(second, _sample(sd1, sd1.model, seed=4), rtol=1e-4, atol=1e-5)
    assert len(graphs) == n_graphs  # the original MODEL again ran uncompiled

    # a later recompile that fails (here: a new latent size) falls back too
    graphs.fail = True
    with torch._dynamo.config.patch(automatic_dynamic_shapes=False), \
            caplog.at_level(logging.WARNING, logger="nodegen.models.compile"):  # a static recompile: faster
        third = _sample(sd1, patched, size=16, steps=1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "nodegen.models.compile"]
    assert len(warnings) == 1 and "simulated compile failure" in warnings[0], warnings
    assert fn.state == "failed"
    torch.testing.assert_close(third, _sample(sd1, sd1.model, size=16, steps=1), rtol=1e-5, atol=1e-6)


def test_failing_compile_warns_and_runs_uncompiled(sd1, graphs, monkeypatch, caplog):
    def failing(gm, example_inputs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setitem(torch_compile.TORCH_BACKENDS, "inductor", failing)
    patched = run("TorchCompileModel", model=sd1.model, backend="inductor")["model"]
    with caplog.at_level(logging.WARNING, logger="nodegen.models.compile"):
        out = _sample(sd1, patched)
    warnings = [r.getMessage() for r in caplog.records if r.name == "nodegen.models.compile"]
    assert len(warnings) == 1, warnings  # once, not at every step
    assert "TorchCompileModel" in warnings[0] and "'inductor'" in warnings[0] and "no C++ compiler" in warnings[0]
    assert torch_compile.compiled_forward(sd1.fx.unet, "inductor").state == "failed"
    torch.testing.assert_close(out, _sample(sd1, sd1.model), rtol=1e-5, atol=1e-6)


def test_unknown_backend_names_node_and_input(sd1):
    with pytest.raises(ValueError, match="TorchCompileModel.*backend"):
        torch_compile.compiled_forward(sd1.fx.unet, "tvm")
    with pytest.raises(ValueError, match="TorchCompileModel.*'backend'"):
        run("TorchCompileModel", model=sd1.model, backend="tvm")


def test_comfy_api_workflow_with_torch_compile_imports_and_runs(sd1, graphs, tmp_path):
    from nodegen.formats import comfy
    from nodegen.runtime.engine import Engine

    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    shutil.copy(sd1.fx.single_file, tmp_path / "models" / "checkpoints" / "tiny-sd1.safetensors")

    def n(ct, **inputs):
        return {"class_type": ct, "inputs": inputs}

    api = {"4": n("CheckpointLoaderSimple", ckpt_name="tiny-sd1.safetensors"),
           "10": n("TorchCompileModel", backend="inductor", model=["4", 0]),
           "6": n("CLIPTextEncode", text="a cat", clip=["4", 1]),
           "7": n("CLIPTextEncode", text="blurry", clip=["4", 1]),
           "5": n("EmptyLatentImage", width=64, height=64, batch_size=1),
           "3": n("KSampler", seed=5, steps=2, cfg=6.0, sampler_name="euler", scheduler="normal", denoise=1.0,
                  model=["10", 0], positive=["6", 0], negative=["7", 0], latent_image=["5", 0]),
           "8": n("VAEDecode", samples=["3", 0], vae=["4", 2]),
           "9": n("SaveImage", filename_prefix="compiled", images=["8", 0])}
    doc, notes = comfy.import_comfy(api)
    assert notes == [] and doc["nodes"]["10"]["type"] == "TorchCompileModel"
    assert doc["nodes"]["10"]["inputs"] == {"backend": "inductor", "model": {"from": ["4", "model"]}}
    assert comfy.export_api(doc) == api
    engine = Engine(models=tmp_path / "models", input_dir=tmp_path, output_dir=tmp_path / "out", device="cpu")
    compiled = engine.run(doc)
    assert compiled.ok, (compiled.problems, [str(f) for f in compiled.failures])
    assert graphs, "the workflow's sampler did not run the compiled denoiser"
    plain = engine.run(comfy.import_comfy(dict(api, **{"3": {**api["3"], "inputs": {**api["3"]["inputs"],
                                                                                      "model": ["4", 0]}}}))[0])
    a, b = (torch.tensor([list(im.getdata()) for im in r.images], dtype=torch.float32) for r in (compiled, plain))
    assert (a - b).abs().max() <= 1  # same pixels (up to rounding)
