"""Chroma (lodestones' Flux.1-schnell derivative: T5-XXL alone, an approximator for the blocks'
modulation): files in ComfyUI's layout are detected and converted, ComfyUI's Chroma workflow (UNETLoader,
CLIPLoader type "chroma", T5TokenizerOptions, CLIPTextEncode with a negative, EmptySD3LatentImage,
KSampler) imports in both formats and runs over a ComfyUI-style models folder, and its image equals
diffusers' ChromaPipeline on the same tiny random-weight components and seed (max abs pixel difference
<= 1e-3, fp32 CPU, as the Flux oracle tests).

The pipeline runs at ``max_sequence_length`` = the prompts' token count (with the pad token
T5TokenizerOptions adds): its T5 then masks that pad as nodegen does, and its transformer mask hides
nothing, as ComfyUI's Chroma sees every token. It is given the schedule of KSampler's "simple"
scheduler: ComfyUI takes those sigmas from the model's 10,000-entry table (before the shift: t = 1,
0.6667, 0.3334 for 3 steps, where the pipeline's own are 1, 2/3, 1/3); the pipeline shifts them as
ComfyUI's ModelSamplingFlux does (mu = 1.15), so both sample at the same sigmas.
"""

from __future__ import annotations

import pytest
import torch

from nodegen.formats import comfy
from nodegen.models.detect import detect
from nodegen.models.files import open_state_dict, shapes_of
from tests.support.chroma_fixtures import fixture
from tests.support.comfy_run import models_folder, run_api
from tests.support.comfy_ui import ui_from_api

torch.set_num_threads(1)
TOL = 1e-3
PROMPT, NEGATIVE = "a red fox in the snow", "blurry, low quality, watermark"


@pytest.fixture(scope="module")
def chroma(tmp_path_factory):
    return fixture(tmp_path_factory.mktemp("chroma"))


def _models(fx, tmp_path):
    return models_folder(tmp_path, [("diffusion_models", fx.diffusion_model, "Chroma1-HD.safetensors"),
                                    ("diffusion_models", fx.diffusion_model_diffusers, "chroma-diffusers.safetensors"),
                                    ("text_encoders", fx.t5xxl, "t5xxl_fp16.safetensors"),
                                    ("vae", fx.vae_file, "ae.safetensors")])


def _api(unet: str = "Chroma1-HD.safetensors", min_padding: int = 1) -> dict:
    """ComfyUI's Chroma example workflow's shape (API format), at 64 px and 3 steps."""
    def n(ct, **inputs):
        return {"class_type": ct, "inputs": inputs}

    return {
        "1": n("UNETLoader", unet_name=unet, weight_dtype="default"),
        "2": n("CLIPLoader", clip_name="t5xxl_fp16.safetensors", type="chroma", device="default"),
        "3": n("T5TokenizerOptions", min_padding=min_padding, min_length=0, clip=["2", 0]),
        "4": n("CLIPTextEncode", text=PROMPT, clip=["3", 0]),
        "5": n("CLIPTextEncode", text=NEGATIVE, clip=["3", 0]),
        "6": n("EmptySD3LatentImage", width=64, height=64, batch_size=1),
        "7": n("KSampler", seed=11, steps=3, cfg=4.0, sampler_name="euler", scheduler="simple", denoise=1.0,
               model=["1", 0], positive=["4", 0], negative=["5", 0], latent_image=["6", 0]),
        "8": n("VAELoader", vae_name="ae.safetensors"),
        "9": n("VAEDecode", samples=["7", 0], vae=["8", 0]),
        "10": n("SaveImage", filename_prefix="chroma", images=["9", 0]),
    }


#: ComfyUI's widget order (nodes.py, comfy_extras/nodes_cond.py, nodes_sd3.py), typed here, not read from the tables
WIDGETS = {"UNETLoader": ["unet_name", "weight_dtype"], "CLIPLoader": ["clip_name", "type", "device"],
           "T5TokenizerOptions": ["min_padding", "min_length"], "CLIPTextEncode": ["text"],
           "EmptySD3LatentImage": ["width", "height", "batch_size"],
           "KSampler": ["seed", "control", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
           "VAELoader": ["vae_name"], "VAEDecode": [], "SaveImage": ["filename_prefix"]}
OUTPUTS = {"UNETLoader": ["MODEL"], "CLIPLoader": ["CLIP"], "T5TokenizerOptions": ["CLIP"],
           "CLIPTextEncode": ["CONDITIONING"], "EmptySD3LatentImage": ["LATENT"], "KSampler": ["LATENT"],
           "VAELoader": ["VAE"], "VAEDecode": ["IMAGE"], "SaveImage": []}


def _simple_schedule(steps: int, table: int = 10000) -> list[float]:
    """ComfyUI's "simple" scheduler before the shift: every ``table / steps``-th entry of the table
    ``t = i / table``, from the top."""
    return [(table - int(i * table / steps)) / table for i in range(steps)]


def _pipeline_image(fx, pads: int, pipe=None) -> torch.Tensor:
    """ChromaPipeline's image for PROMPT / NEGATIVE with ``pads`` pad tokens after each prompt's EOS."""
    lengths = {len(fx.tokenizer(t).input_ids) for t in (PROMPT, NEGATIVE)}
    assert len(lengths) == 1, "the prompts must have as many tokens (one max_sequence_length for both)"
    if pipe is None:
        pipe = fx.pipeline()
        pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=3, sigmas=_simple_schedule(3),
               guidance_scale=4.0, height=64, width=64, max_sequence_length=lengths.pop() + pads,
               generator=torch.Generator().manual_seed(11), output_type="pt")
    return out.images.permute(0, 2, 3, 1)


def test_chroma_files_are_detected_and_converted_to_diffusers_keys(chroma):
    from nodegen.models.chroma_convert import chroma_to_diffusers

    det = detect(shapes_of(open_state_dict(chroma.diffusion_model)))
    assert (det.kind, det.family, det.layout) == ("unet", "chroma", "original")
    det = detect(shapes_of(open_state_dict(chroma.diffusion_model_diffusers)))
    assert (det.kind, det.family, det.layout) == ("unet", "chroma", "diffusers")
    original = dict(chroma.original_transformer)
    assert "distilled_guidance_layer.norms.0.scale" in original and not any("_mod." in k for k in original)
    converted = chroma_to_diffusers(original)
    want = chroma.transformer.state_dict()
    assert original == {} and set(converted) == set(want)
    assert all(torch.equal(converted[k], want[k]) for k in want)


def test_comfyui_chroma_workflow_imports_in_both_formats_and_equals_chroma_pipeline(chroma, tmp_path):
    api = _api()
    doc, notes = comfy.import_comfy(api)
    assert notes == []
    assert doc["nodes"]["2"]["inputs"]["type"] == "chroma"
    assert doc["nodes"]["3"]["inputs"] == {"min_padding": 1, "min_length": 0, "clip": {"from": ["2", "clip"]}}
    ui = ui_from_api(api, WIDGETS, OUTPUTS)
    ui_doc, ui_notes = comfy.import_comfy(ui)
    assert ui_notes == [] and {k: n["inputs"] for k, n in ui_doc["nodes"].items()} == {
        k: n["inputs"] for k, n in doc["nodes"].items()}
    result = run_api(ui, _models(chroma, tmp_path), tmp_path, targets=["9", "10"])  # the UI file, as a user opens it
    ours = result.output("9")
    assert ours.shape == (1, 64, 64, 3)
    assert float((ours - _pipeline_image(chroma, pads=1)).abs().max()) <= TOL
    assert result.images[0].size == (64, 64)


@pytest.mark.parametrize("unet", ["Chroma1-HD.safetensors", "chroma-diffusers.safetensors"])
def test_chroma_without_padding_equals_chroma_pipeline(chroma, tmp_path, unet):
    """No T5TokenizerOptions (min_padding 0, ComfyUI's Chroma default): the prompts end at their EOS;
    a transformer file in diffusers' key layout gives the same image."""
    result = run_api(_api(unet, min_padding=0), _models(chroma, tmp_path), tmp_path, targets=["9"])
    assert float((result.output("9") - _pipeline_image(chroma, pads=0)).abs().max()) <= TOL


def test_chroma_tokens_follow_comfyui_padding_and_weights_change_the_encoding(chroma):
    from nodegen.models.chroma_text import ChromaTextEncoder, chroma_tokens

    tok = chroma.tokenizer
    ids, _, n_real = chroma_tokens(tok, "a fox", min_padding=1)
    assert ids == tok("a fox").input_ids + [tok.pad_token_id] and n_real == len(ids) - 1
    ids, _, _ = chroma_tokens(tok, "a fox", min_padding=1, min_length=10)
    assert len(ids) == 10 and ids[n_real:] == [tok.pad_token_id] * (10 - n_real)
    te = ChromaTextEncoder("chroma", {"t5": (tok, chroma.text_encoder)})
    n = len(tok("a red fox").input_ids)
    plain, weighted = te.encode("a red fox")[0].embeds, te.encode("(a red fox:1.5)")[0].embeds
    assert plain.shape == weighted.shape == (1, n, 192)
    assert not torch.equal(plain[:, :-1], weighted[:, :-1]) and torch.equal(plain[:, -1], weighted[:, -1])  # EOS: 1.0
    assert te.with_tokenizer_options(2, 0).encode("a red fox")[0].embeds.shape[1] == n + 2


def test_t5_tokenizer_options_refuses_other_text_encoders():
    from nodegen.models.flow_loader import MissingTextEncoder
    from tests.support.nodes import run

    with pytest.raises(ValueError, match="T5TokenizerOptions: input 'clip' is a flux text encoder"):
        run("T5TokenizerOptions", clip=MissingTextEncoder("flux", "flux1-dev.safetensors"), min_padding=1,
            min_length=0)


def _failure(result) -> str:
    assert not result.ok
    return " ".join(str(f) for f in result.failures)


def test_wrong_files_and_wrong_encoders_are_refused_naming_node_input_and_file(chroma, tmp_path):
    models = _models(chroma, tmp_path)
    api = _api(unet="t5xxl_fp16.safetensors")
    (models / "diffusion_models" / "t5xxl_fp16.safetensors").symlink_to(chroma.t5xxl)
    msg = _failure(run_api(api, models, tmp_path, check=False))
    assert "UNETLoader: unet_name 't5xxl_fp16.safetensors'" in msg and "t5xxl_fp16.safetensors: this is" in msg

    api = _api()
    api["2"]["inputs"]["clip_name"] = "Chroma1-HD.safetensors"
    (models / "text_encoders" / "Chroma1-HD.safetensors").symlink_to(chroma.diffusion_model)
    msg = _failure(run_api(api, models, tmp_path, check=False))
    assert "CLIPLoader: clip_name 'Chroma1-HD.safetensors'" in msg and "(chroma), not a CLIP or T5" in msg

    api = _api()
    api["3"] = {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["4", 0]}}
    api["4"]["inputs"]["clip"] = api["5"]["inputs"]["clip"] = ["2", 0]
    api["7"]["inputs"]["positive"] = ["3", 0]
    msg = _failure(run_api(api, models, tmp_path, check=False))
    assert "distilled guidance 0" in msg and "FluxGuidance" in msg


def test_fp8_chroma_file_stays_fp8_and_equals_its_upcast_weights(chroma, tmp_path):
    """An fp8 (e4m3fn) Chroma file keeps its linear weights fp8 and computes layer by layer in fp32:
    the same latents as those weights upcast at load."""
    from nodegen.diffusion.sample import Steps, sample
    from nodegen.models.chroma_text import ChromaTextEncoder
    from nodegen.models.flow_loader import load_diffusion_model
    from nodegen.models.manager import ModelManager
    from tests.support.flow_fixtures import _save

    path = _save(chroma.original_transformer, tmp_path / "chroma-fp8_e4m3fn.safetensors", torch.float8_e4m3fn)
    mgr = ModelManager(device="cpu")
    fp8 = load_diffusion_model(path, manager=mgr)
    linear = [m.weight for m in fp8.unet.modules() if isinstance(m, torch.nn.Linear)]
    assert fp8.family == "chroma" and linear and all(w.dtype == torch.float8_e4m3fn for w in linear)
    ref = load_diffusion_model(chroma.diffusion_model, manager=mgr)
    with torch.no_grad():
        for (_, p), (_, q) in zip(ref.unet.named_parameters(), fp8.unet.named_parameters(), strict=True):
            p.data = q.data.float()
    cond = ChromaTextEncoder("chroma", {"t5": (chroma.tokenizer, chroma.text_encoder)}).encode("a cat")
    a, b = (sample(m, cond, None, {"samples": torch.zeros(1, 16, 8, 8)}, 1, Steps(2, "simple"), 1.0, "euler",
                   device="cpu").latent["samples"] for m in (fp8, ref))
    assert float((a - b).abs().max()) < 1e-5


def _pair(g, out_f: int, in_f: int, rank: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(rank, in_f, generator=g) * 0.3, torch.randn(out_f, rank, generator=g) * 0.3


def _lora_image(fx, lora: dict | None, ours: bool = True) -> torch.Tensor:
    from nodegen.diffusion.sample import Steps, sample
    from nodegen.models.chroma_text import ChromaTextEncoder
    from nodegen.models.lora import apply_lora, parse_lora
    from nodegen.models.objects import DiffusionModel, VAEModel

    if not ours:
        pipe = fx.pipeline()
        pipe.set_progress_bar_config(disable=True)
        pipe.load_lora_weights({k: v.clone() for k, v in lora.items()})
        try:
            return _pipeline_image(fx, pads=0, pipe=pipe)
        finally:
            pipe.unload_lora_weights()
    model = DiffusionModel(fx.transformer, "chroma", "flow")
    te = ChromaTextEncoder("chroma", {"t5": (fx.tokenizer, fx.text_encoder)})
    if lora is not None:
        model, te = apply_lora(model, te, parse_lora(lora), 1.0, 1.0)
    out = sample(model, te.encode(PROMPT), te.encode(NEGATIVE), {"samples": torch.zeros(1, 16, 8, 8)}, 11,
                 Steps(3, "simple"), 4.0, "euler", device="cpu")
    return VAEModel.from_vae(fx.vae).decode(out.latent["samples"], device="cpu")


def test_chroma_lora_equals_chroma_pipeline_and_its_original_spelling(chroma):
    """A LoRA in diffusers' spelling equals ChromaPipeline's ``load_lora_weights``; the same LoRA in the
    original (ComfyUI / kohya) spelling, on the fused ``img_attn.qkv`` and ``linear1``, equals it."""
    g = torch.Generator().manual_seed(5)
    h, mlp = 128, 512
    d1, u1 = _pair(g, 3 * h + mlp, h)
    d2, u2 = _pair(g, 3 * h, h)
    comfy_keys = {"diffusion_model.single_blocks.0.linear1.lora_A.weight": d1,
                  "diffusion_model.single_blocks.0.linear1.lora_B.weight": u1,
                  "diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": d2,
                  "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": u2}
    kohya = {"lora_unet_single_blocks_0_linear1.lora_down.weight": d1, "lora_unet_single_blocks_0_linear1.lora_up.weight": u1,
             "lora_unet_single_blocks_0_linear1.alpha": torch.tensor(4.0),  # alpha = rank: scale 1
             "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": d2,
             "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": u2}
    split = {}
    for j, p in enumerate("qkv"):
        split[f"transformer.single_transformer_blocks.0.attn.to_{p}.lora_A.weight"] = d1
        split[f"transformer.single_transformer_blocks.0.attn.to_{p}.lora_B.weight"] = u1[j * h:(j + 1) * h]
        split[f"transformer.transformer_blocks.0.attn.to_{p}.lora_A.weight"] = d2
        split[f"transformer.transformer_blocks.0.attn.to_{p}.lora_B.weight"] = u2[j * h:(j + 1) * h]
    split["transformer.single_transformer_blocks.0.proj_mlp.lora_A.weight"] = d1
    split["transformer.single_transformer_blocks.0.proj_mlp.lora_B.weight"] = u1[3 * h:]
    base, ours = _lora_image(chroma, None), _lora_image(chroma, split)
    assert float((ours - base).abs().max()) > 1e-2, "the LoRA changes the image"
    assert float((ours - _lora_image(chroma, split, ours=False)).abs().max()) <= TOL
    for original in (comfy_keys, kohya):
        assert float((_lora_image(chroma, original) - ours).abs().max()) <= 1e-5


def test_a_chroma_file_without_the_latent_model_tensors_is_refused_clearly(chroma, tmp_path):
    from nodegen.models.detect import ModelKindError
    from nodegen.models.flow_loader import load_diffusion_model
    from tests.support.flow_fixtures import _save

    sd = {k: v for k, v in chroma.original_transformer.items() if not k.startswith("img_in.")}
    path = _save(sd, tmp_path / "Chroma1-Radiance.safetensors")
    with pytest.raises(ModelKindError, match=r"Chroma1-Radiance.safetensors: this Chroma file lacks the tensor "
                                             r"'img_in.weight'"):
        load_diffusion_model(path)


def test_all_in_one_chroma_checkpoint_loads_with_checkpoint_loader(chroma, tmp_path):
    """A single file holding the transformer (``model.diffusion_model.``), the VAE and T5
    (``text_encoders.t5xxl.transformer.``), as ComfyUI's CheckpointLoaderSimple reads Chroma ones:
    the same image as the separate files; the bare diffusion model is refused there, naming its loaders."""
    from safetensors.torch import load_file

    from tests.support.flow_fixtures import _save

    aio = {**{"model.diffusion_model." + k: v for k, v in chroma.original_transformer.items()},
           **{"first_stage_model." + k: v for k, v in load_file(str(chroma.vae_file)).items()},
           **{"text_encoders.t5xxl.transformer." + k: v for k, v in load_file(str(chroma.t5xxl)).items()}}
    models = _models(chroma, tmp_path)
    (models / "checkpoints").mkdir()
    _save(aio, models / "checkpoints" / "chroma-aio.safetensors")
    (models / "checkpoints" / "Chroma1-HD.safetensors").symlink_to(chroma.diffusion_model)
    api = _api(min_padding=0)
    api["1"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "chroma-aio.safetensors"}}
    del api["2"], api["8"]  # CLIPLoader, VAELoader
    api["3"]["inputs"]["clip"] = ["1", 1]
    api["9"]["inputs"]["vae"] = ["1", 2]
    result = run_api(api, models, tmp_path, targets=["9"])
    assert float((result.output("9") - _pipeline_image(chroma, pads=0)).abs().max()) <= TOL
    api["1"]["inputs"]["ckpt_name"] = "Chroma1-HD.safetensors"
    msg = _failure(run_api(api, models, tmp_path, check=False, targets=["9"]))
    assert "Chroma1-HD.safetensors: this is a Chroma diffusion model without a VAE" in msg and "UNETLoader" in msg


def test_chroma_diffusers_folder_loads_with_checkpoint_loader(chroma, tmp_path):
    """A ChromaPipeline ``save_pretrained`` folder (transformer, T5 and its tokenizer, VAE)."""
    from nodegen.diffusion.sample import Steps, sample
    from nodegen.models.loader import load_checkpoint

    folder = tmp_path / "Chroma1-HD-diffusers"
    chroma.pipeline().save_pretrained(str(folder))
    model, te, vae = load_checkpoint(folder)
    assert (model.family, type(te).__name__) == ("chroma", "ChromaTextEncoder")
    out = sample(model, te.encode(PROMPT), te.encode(NEGATIVE), {"samples": torch.zeros(1, 16, 8, 8)}, 11,
                 Steps(3, "simple"), 4.0, "euler", device="cpu")
    assert float((vae.decode(out.latent["samples"], device="cpu") - _pipeline_image(chroma, pads=0)).abs().max()) <= TOL


def test_gguf_chroma_keeps_quantized_linears_and_runs_in_the_gguf_workflow(chroma, tmp_path):
    """A Q8_0 GGUF Chroma (architecture "flux", as ComfyUI-GGUF's converter writes Chroma files) keeps
    its Linear weights as blocks; UnetLoaderGGUF + CLIPLoaderGGUF (type chroma) give the image that
    UNETLoader gives on the same weights dequantized."""
    from nodegen.models.flow_loader import load_diffusion_model
    from nodegen.models.gguf_file import GGUFStateDict
    from nodegen.models.gguf_linear import is_quantized
    from tests.support.flow_fixtures import _save
    from tests.test_gguf import Q, write_gguf

    models = _models(chroma, tmp_path)
    gguf_path = write_gguf(models / "diffusion_models" / "Chroma1-HD-Q8_0.gguf", chroma.original_transformer,
                           "flux", Q.Q8_0)
    _save(dict(GGUFStateDict(gguf_path, torch.float32)), models / "diffusion_models" / "Chroma1-HD-Q8_0-dequantized.safetensors")
    model = load_diffusion_model(gguf_path)
    linears = [m for m in model.unet.modules() if isinstance(m, torch.nn.Linear)]
    assert model.family == "chroma" and linears and all(is_quantized(m.weight) for m in linears)
    api = _api(unet="Chroma1-HD-Q8_0-dequantized.safetensors")
    plain = run_api(api, models, tmp_path, targets=["9"]).output("9")
    api["1"] = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "Chroma1-HD-Q8_0.gguf"}}
    api["2"]["class_type"] = "CLIPLoaderGGUF"
    api["2"]["inputs"].pop("device")
    gguf_image = run_api(api, models, tmp_path, targets=["9"]).output("9")
    assert float((gguf_image - plain).abs().max()) <= 1e-4
