"""SaveLatent / LoadLatent and ComfyUI's ``.latent`` files.

ComfyUI's LATENT holds the VAE's raw latents (its model applies the family's scale, and SD3/Flux's
shift); nodegen's 4-channel LATENTs are scaled and record their scale. The files must mean the same
latent in both programs: a file written here holds what ComfyUI's SaveLatent would have written for
the same latent, and a file written by ComfyUI (made below exactly as its SaveLatent code does) loads
to what ComfyUI's LoadLatent gives and reaches the model / the VAE with ComfyUI's values.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nodegen.diffusion.latent_formats import LATENT_FORMATS
from nodegen.diffusion.latent_scale import to_model_scale
from nodegen.formats import open_any
from nodegen.formats.comfy import import_comfy
from nodegen.kernel.context import CancelToken, RunContext
from nodegen.kernel.registry import default_registry
from nodegen.models.objects import SCALING_FACTORS
from nodegen.runtime.engine import Engine
from nodegen.server.security import PathRefused, check_file_names
from tests.support.comfy_ui import ui_from_api
from tests.support.nodes import run

torch.set_num_threads(1)

#: family -> latent channels; the 4-channel families' LATENTs are scaled, the 16-channel ones raw.
FAMILIES = {"sd1": 4, "sdxl": 4, "sd3": 16, "flux": 16}


def comfy_save(path: Path, tensor: torch.Tensor, *, old_format: bool = False) -> None:
    """A .latent file as ComfyUI's SaveLatent writes it (nodes.py: ``latent_tensor`` (contiguous),
    the empty ``latent_format_version_0`` marker, prompt/workflow JSON as metadata through
    comfy.utils.save_torch_file), or a file of the format before the marker."""
    output = {"latent_tensor": tensor.contiguous()}
    if not old_format:
        output["latent_format_version_0"] = torch.tensor([])
    metadata = {"prompt": json.dumps({"3": {"class_type": "KSampler", "inputs": {}}}),
                "workflow": json.dumps({"nodes": [], "links": []})}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(output, str(path), metadata=metadata)


def file_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def make_ctx(out: Path, workflow: dict | None = None, node_id: str = "1") -> RunContext:
    return RunContext(node_id=node_id, node_title="", device="cpu", models=None, paths=None,
                      output_dir=str(out), input_dir=str(out), temp_dir=str(out / "tmp"), workflow=workflow,
                      cancel=CancelToken())


def saved(ctx: RunContext) -> Path:
    (path,) = ctx.ui_data["paths"]
    return Path(path)


def model(family: str):
    return SimpleNamespace(family=family)


def comfy_process_in(family: str, raw: torch.Tensor) -> torch.Tensor:
    """What ComfyUI's model takes from a raw latent (its latent formats' process_in)."""
    if family in SCALING_FACTORS:
        return raw * SCALING_FACTORS[family]
    scale, shift = LATENT_FORMATS[family]
    return (raw - shift) * scale


def nodegen_model_input(family: str, latent: dict) -> torch.Tensor:
    """What nodegen's sampler gives the model for a LATENT: run_sample's to_model_scale, then the
    16-channel families' scale and shift (diffusion.sample's latent_in)."""
    from nodegen.diffusion.latent_formats import latent_in

    return latent_in(family, to_model_scale(model(family), latent)["samples"])


class FakeVAE:
    """Stands for a VAEModel with a known scale: records the scale each decode divides by."""

    scale_assumed = False

    def __init__(self, scaling_factor: float, channels: int = 4) -> None:
        self.scaling_factor = scaling_factor
        self.channels = channels
        self.decoded_with: list[float] = []

    def encode(self, pixels, device=None):
        g = torch.Generator().manual_seed(3)
        raw = torch.randn(pixels.shape[0], self.channels, pixels.shape[1] // 8, pixels.shape[2] // 8, generator=g)
        return raw * self.scaling_factor

    def decode(self, z, device=None, scale=None):
        self.decoded_with.append(scale)
        return (z / scale).permute(0, 2, 3, 1)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_sampler_output_saves_as_comfyui_would_and_loads_back_to_the_same_latent(tmp_path, family):
    x = torch.randn(2, FAMILIES[family], 3, 5, generator=torch.Generator().manual_seed(1))
    ctx = make_ctx(tmp_path)
    run("SaveLatent", ctx, samples={"samples": x, "family": family}, filename_prefix="latents/run")
    path = saved(ctx)
    assert path == tmp_path / "latents" / "run_00001_.latent"
    tensors, _ = file_tensors(path)
    assert set(tensors) == {"latent_tensor", "latent_format_version_0"}
    assert tensors["latent_format_version_0"].numel() == 0
    # ComfyUI's sampler returns process_out(x): x / scale for SD1/SDXL; SD3/Flux outputs are raw already
    want = x / SCALING_FACTORS[family] if family in SCALING_FACTORS else x
    assert torch.equal(tensors["latent_tensor"], want)

    loaded = run("LoadLatent", make_ctx(tmp_path), latent=str(path))["latent"]
    assert torch.equal(loaded["samples"], want) and loaded["vae_scale"] == 1.0
    # the same latent: the model gets what it would have got from the original
    torch.testing.assert_close(nodegen_model_input(family, loaded),
                               nodegen_model_input(family, {"samples": x}), rtol=1e-6, atol=1e-6)
    # and it saves again to the same file contents
    ctx2 = make_ctx(tmp_path)
    run("SaveLatent", ctx2, samples=loaded, filename_prefix="latents/run")
    assert saved(ctx2).name == "run_00002_.latent"
    assert torch.equal(file_tensors(saved(ctx2))[0]["latent_tensor"], want)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_comfyui_file_loads_to_comfyuis_latent_and_reaches_model_and_vae_as_there(tmp_path, family):
    raw = torch.randn(1, FAMILIES[family], 4, 6, generator=torch.Generator().manual_seed(2)) * 5
    comfy_save(tmp_path / "comfy.latent", raw)
    loaded = run("LoadLatent", make_ctx(tmp_path), latent=str(tmp_path / "comfy.latent"))["latent"]
    assert torch.equal(loaded["samples"], raw.float() * 1.0)  # ComfyUI's LoadLatent, multiplier 1.0
    assert torch.equal(nodegen_model_input(family, loaded), comfy_process_in(family, raw))
    scale = SCALING_FACTORS.get(family, 1.0)
    vae = FakeVAE(scale, FAMILIES[family])
    image = run("VAEDecode", None, samples=loaded, vae=vae)["image"]
    assert vae.decoded_with == [1.0]  # decoded as the raw latent it is, as ComfyUI's VAE decodes it
    assert torch.equal(image, raw.permute(0, 2, 3, 1))
    ctx = make_ctx(tmp_path)
    run("SaveLatent", ctx, samples=loaded, filename_prefix="again")
    assert torch.equal(file_tensors(saved(ctx))[0]["latent_tensor"], raw)  # bit for bit


def test_a_file_of_the_old_format_is_multiplied_by_1_over_0_18215(tmp_path):
    old = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(4)).half()
    comfy_save(tmp_path / "old.latent", old, old_format=True)
    loaded = run("LoadLatent", make_ctx(tmp_path), latent=str(tmp_path / "old.latent"))["latent"]
    assert loaded["samples"].dtype == torch.float32
    assert torch.equal(loaded["samples"], old.float() * (1.0 / 0.18215))
    torch.testing.assert_close(to_model_scale(model("sd1"), loaded)["samples"], old.float(), rtol=1e-5, atol=1e-6)


def test_an_encoded_latent_saves_as_the_raw_vae_latent(tmp_path):
    pixels = torch.rand(1, 32, 48, 3, generator=torch.Generator().manual_seed(5))
    vae = FakeVAE(0.13025)
    latent = run("VAEEncode", None, pixels=pixels, vae=vae)["latent"]
    assert latent["vae_scale"] == 0.13025  # the encode nodes record the VAE's scale
    ctx = make_ctx(tmp_path)
    run("SaveLatent", ctx, samples=latent, filename_prefix="enc")
    want = latent["samples"] / 0.13025
    assert torch.equal(file_tensors(saved(ctx))[0]["latent_tensor"], want)
    # an SD1 model gets ComfyUI's input for this raw latent (SDXL VAE, SD1 model: raw x 0.18215)
    torch.testing.assert_close(to_model_scale(model("sd1"), latent)["samples"], want * 0.18215)
    # the same VAE decodes it at its own scale, as before
    run("VAEDecode", None, samples=latent, vae=vae)
    assert vae.decoded_with == [0.13025]


def test_a_4_channel_latent_of_unknown_scale_is_refused_unless_empty(tmp_path):
    ctx = make_ctx(tmp_path)
    with pytest.raises(ValueError, match="input 'samples'.*does not record its scale"):
        run("SaveLatent", ctx, samples={"samples": torch.ones(1, 4, 2, 2)}, filename_prefix="x")
    assert not list(tmp_path.rglob("*.latent"))
    empty = run("EmptyLatentImage", None, width=64, height=32, batch_size=2)["latent"]
    run("SaveLatent", ctx, samples=empty, filename_prefix="x")
    assert torch.equal(file_tensors(saved(ctx))[0]["latent_tensor"], torch.zeros(2, 4, 4, 8))


def test_saving_never_overwrites(tmp_path):
    (tmp_path / "keep").mkdir()
    existing = tmp_path / "keep" / "x_00001_.latent"
    existing.write_bytes(b"not mine")
    (tmp_path / "keep" / "x_00007_.png").write_bytes(b"")  # another kind of file: its own counter
    paths = []
    for _ in range(2):
        ctx = make_ctx(tmp_path)
        run("SaveLatent", ctx, samples={"samples": torch.zeros(1, 4, 1, 1)}, filename_prefix="keep/x")
        paths.append(saved(ctx).name)
    assert paths == ["x_00002_.latent", "x_00003_.latent"]
    assert existing.read_bytes() == b"not mine"
    assert not [p for p in (tmp_path / "keep").iterdir() if p.name.endswith(".tmp")]


def test_bad_files_are_refused_naming_the_input_and_the_file(tmp_path):
    (tmp_path / "junk.latent").write_bytes(b"\x00" * 3)
    with pytest.raises(ValueError, match=r"input 'latent': .*junk\.latent.* is not a latent file"):
        run("LoadLatent", make_ctx(tmp_path), latent=str(tmp_path / "junk.latent"))
    save_file({"weights": torch.zeros(2)}, str(tmp_path / "model.latent"))
    with pytest.raises(ValueError, match=r"model\.latent.*no 'latent_tensor' tensor \(found weights\)"):
        run("LoadLatent", make_ctx(tmp_path), latent=str(tmp_path / "model.latent"))
    comfy_save(tmp_path / "video.latent", torch.zeros(1, 16, 3, 4, 4))
    with pytest.raises(ValueError, match=r"video\.latent.*shape \(1, 16, 3, 4, 4\)"):
        run("LoadLatent", make_ctx(tmp_path), latent=str(tmp_path / "video.latent"))


@pytest.fixture()
def engine(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "input").mkdir()
    return Engine(models=tmp_path / "models", input_dir=tmp_path / "input", output_dir=tmp_path / "out",
                  device="cpu")


def test_a_comfyui_api_workflow_with_both_nodes_imports_and_runs(engine, tmp_path):
    raw = torch.randn(1, 4, 3, 4, generator=torch.Generator().manual_seed(6))
    comfy_save(tmp_path / "input" / "latents" / "from_comfy.latent", raw)
    api = {"1": {"class_type": "LoadLatent", "inputs": {"latent": "latents/from_comfy.latent"}},
           "2": {"class_type": "LatentUpscaleBy",
                 "inputs": {"samples": ["1", 0], "upscale_method": "nearest-exact", "scale_by": 2.0}},
           "3": {"class_type": "SaveLatent", "inputs": {"samples": ["2", 0], "filename_prefix": "latents/ComfyUI"}}}
    (tmp_path / "api.json").write_text(json.dumps(api))
    wf = open_any(tmp_path / "api.json")
    assert {n["type"] for n in wf.nodes.values()} == {"LoadLatent", "LatentUpscaleBy", "SaveLatent"}
    (choice_input,) = engine.schema()["nodes"]["LoadLatent"]["inputs"]
    assert choice_input["choices"] == ["latents/from_comfy.latent"]  # the files shown in the editor
    # the editor (UI) format of the same workflow imports to the same nodes
    ui = ui_from_api(api, {"LoadLatent": ["latent"], "LatentUpscaleBy": ["upscale_method", "scale_by"],
                           "SaveLatent": ["filename_prefix"]},
                     {"LoadLatent": ["LATENT"], "LatentUpscaleBy": ["LATENT"], "SaveLatent": []})
    ui_doc, _notes = import_comfy(ui)
    assert {k: (n["type"], n["inputs"]) for k, n in ui_doc["nodes"].items()} == {
        k: (n["type"], n["inputs"]) for k, n in wf.nodes.items()}
    result = engine.run(wf)
    assert result.ok, (result.problems, [str(f) for f in result.failures])
    out = tmp_path / "out" / "latents" / "ComfyUI_00001_.latent"
    assert result.paths == [str(out)]
    tensors, meta = file_tensors(out)
    assert torch.equal(tensors["latent_tensor"], raw.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert json.loads(meta["nodegen-workflow"])["nodes"].keys() == wf.nodes.keys()
    values = json.loads(meta["nodegen-values"])
    assert values["inputs"]["1"] == {"latent": "latents/from_comfy.latent"} and values["batch_size"] == 1
    prompt = json.loads(meta["prompt"])  # ComfyUI's own metadata key, in its API format
    assert sorted(n["class_type"] for n in prompt.values()) == ["LatentUpscaleBy", "LoadLatent", "SaveLatent"]


def test_files_outside_the_input_folder_are_refused_with_node_input_and_file(engine, tmp_path):
    comfy_save(tmp_path / "outside.latent", torch.zeros(1, 4, 2, 2))
    doc = {"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "LoadLatent", "title": "Cached", "inputs": {"latent": "../outside.latent"}},
        "2": {"type": "SaveLatent", "inputs": {"samples": {"from": ["1", "latent"]}, "filename_prefix": "../up"}}}}
    result = engine.run(doc)
    assert result.status == "invalid"
    by_input = {p.input: p for p in result.problems}
    assert by_input["latent"].node_id == "1"
    assert "'../outside.latent' not found" in by_input["latent"].message
    assert "input files are read only from" in by_input["latent"].message
    assert "outside the output folder" in by_input["filename_prefix"].message
    # at run time (a linked name, or no validation), the node says it too
    with pytest.raises(FileNotFoundError, match=r"input 'latent': latent file '\.\./outside\.latent' not found "
                                                r"\(input files are read only from"):
        run("LoadLatent", SimpleNamespace(env=engine.env), latent="../outside.latent")
    # the job server refuses the name before queueing it
    for name in ("../outside.latent", str(tmp_path / "outside.latent"), "~/x.latent"):
        doc["nodes"]["1"]["inputs"]["latent"] = name
        with pytest.raises(PathRefused, match=r"node 1 \(Cached\), input 'latent'") as info:
            check_file_names(doc, default_registry(), engine.env, {})
        assert info.value.field == "workflow.nodes.1.inputs.latent"


def test_the_job_server_lists_the_saved_file_and_refuses_names_outside_the_input_folder(tmp_path):
    from fastapi.testclient import TestClient

    from nodegen.server.app import ServerConfig, create_app

    comfy_save(tmp_path / "in" / "start.latent", torch.randn(1, 4, 2, 2))
    comfy_save(tmp_path / "secret.latent", torch.zeros(1, 4, 2, 2))
    doc = {"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "LoadLatent", "title": "Cached", "inputs": {"latent": "start.latent"}},
        "2": {"type": "SaveLatent", "inputs": {"samples": {"from": ["1", "latent"]}, "filename_prefix": "latents/job"}}}}
    app = create_app(ServerConfig(out_dir=str(tmp_path / "out"), input_dir=str(tmp_path / "in"), device="cpu"))
    with TestClient(app) as client:
        r = client.post("/jobs", params={"wait": 30}, json={"workflow": doc})
        assert r.status_code in (200, 201), r.text
        job = r.json()
        assert job["status"] == "done" and job["files"] == ["latents/job_00001_.latent"], job
        assert (tmp_path / "out" / "jobs" / job["id"] / "latents" / "job_00001_.latent").is_file()
        for name in ("../secret.latent", str(tmp_path / "secret.latent")):
            r = client.post("/jobs", json={"workflow": doc, "set": {"Cached.latent": name}})
            assert r.status_code == 403 and r.json()["field"] == "set.Cached.latent", r.text
            assert "input 'latent'" in r.json()["error"]
