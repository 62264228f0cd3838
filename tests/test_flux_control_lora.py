"""Flux.1 control LoRAs (BFL's flux1-canny-dev-lora / flux1-depth-dev-lora layout: LoRA pairs with
up-layer biases on every linear layer, whole RMSNorm weights, and an ``img_in`` LoRA taking 128
input features where flux1-dev's input layer takes 64) on the tiny Flux fixture:

* LoraLoaderModelOnly's LoRA + InstructPixToPixConditioning == diffusers' FluxControlPipeline after
  ``load_lora_weights`` of the same file (max abs pixel difference <= 1e-3). Diffusers' BFL
  converter hard-codes the full-size model (19 double blocks, 38 single, width 3072): the test
  runs that converter's own code with the tiny model's sizes;
* the base model is unchanged: its input layer keeps 64 features, a plain run equals one before;
* ComfyUI's spelling of the file (``diff_b``, ``set_weight``, ``reshape_weight``) gives the same weights;
* ComfyUI's workflow (UNETLoader, LoraLoaderModelOnly, InstructPixToPixConditioning, KSampler) runs.
"""

from __future__ import annotations

import copy

import pytest
import torch

from nodegen.diffusion.flow_forward import pack
from nodegen.diffusion.flow_sampling import flux_mu
from nodegen.diffusion.sample import Steps, sample
from nodegen.models.lora import apply_lora, read_lora
from tests.support.comfy_run import flux_models, run_api
from tests.support.flow_fixtures import _save, fixture
from tests.support.nodes import run
from tests.test_oracle_flow import flux_components
from tests.test_oracle_flux_concat import _in_model_space, _pipe_parts

torch.set_num_threads(1)
TOL = 1e-3
RANK = 4


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return fixture("flux", tmp_path_factory.mktemp("flux"))


#: diffusers' BFL converter (0.42) swaps the two halves of ``final_layer.adaLN_modulation.1``'s
#: lora_A as well as its lora_B (``swap_scale_shift`` on both): its delta is then not the layer's
#: swapped (shift, scale -> scale, shift) delta. ComfyUI patches the original weight, nodegen swaps
#: the whole delta as the checkpoint converter swaps the weight. The test LoRA's lora_A there has two
#: equal halves, which that swap leaves as they are; the layer is checked on its own against
#: ComfyUI's rule in test_comfyui_spelling_gives_the_same_weights.
_SWAPPED_A = "final_layer.adaLN_modulation.1"


def control_lora(fx, seed: int = 0) -> dict[str, torch.Tensor]:
    """A control LoRA for the fixture in BFL's layout: every linear layer of the original model
    (``<module>.weight`` with 2 dims) gets lora_A / lora_B / lora_B.bias, ``img_in`` twice the
    input features; every ``*_norm.scale`` a new value."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, w in sorted(fx.original_transformer.items()):
        if key.endswith(".weight") and w.ndim == 2:
            module = key[: -len(".weight")]
            out_f, in_f = w.shape
            in_f = 2 * in_f if module == "img_in" else in_f
            sd[f"{module}.lora_A.weight"] = torch.randn(RANK, in_f, generator=g) * 0.1
            sd[f"{module}.lora_B.weight"] = torch.randn(out_f, RANK, generator=g) * 0.1
            sd[f"{module}.lora_B.bias"] = torch.randn(out_f, generator=g) * 0.05
            if module == _SWAPPED_A:
                sd[f"{module}.lora_A.weight"] = sd[f"{module}.lora_A.weight"][: RANK // 2].repeat(2, 1)
        elif key.endswith("_norm.scale"):
            sd[key] = 1.0 + 0.2 * torch.randn(w.shape, generator=g)
    return sd


def comfy_spelling(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same LoRA as ComfyUI's ``convert_lora_bfl_control`` spells it."""
    out = {"diffusion_model." + k.replace(".lora_B.bias", ".diff_b").replace("_norm.scale", "_norm.set_weight"): v
           for k, v in sd.items()}
    out["diffusion_model.img_in.reshape_weight"] = torch.tensor([sd["img_in.lora_B.weight"].shape[0],
                                                                 sd["img_in.lora_A.weight"].shape[1]])
    return out


@pytest.fixture(scope="module")
def lora_file(flux, tmp_path_factory):
    return _save(control_lora(flux), tmp_path_factory.mktemp("lora") / "flux1-canny-dev-lora.safetensors")


def _tiny_bfl_converter(monkeypatch) -> None:
    """diffusers' ``_convert_bfl_flux_control_lora_to_diffusers`` with the fixture's sizes."""
    import inspect

    import diffusers.loaders.lora_conversion_utils as conversion
    import diffusers.loaders.lora_pipeline as lora_pipeline

    src = inspect.getsource(conversion._convert_bfl_flux_control_lora_to_diffusers)
    for full, tiny in (("num_layers = 19", "num_layers = 1"), ("num_single_layers = 38", "num_single_layers = 2"),
                       ("inner_dim = 3072", "inner_dim = 128")):
        assert src.count(full) == 1
        src = src.replace(full, tiny)
    namespace = dict(vars(conversion))
    exec(src, namespace)  # noqa: S102 - diffusers' own function, sizes changed
    monkeypatch.setattr(lora_pipeline, "_convert_bfl_flux_control_lora_to_diffusers",
                        namespace["_convert_bfl_flux_control_lora_to_diffusers"])


def _ours(flux, model, te, vae, control: torch.Tensor, seed: int = 8) -> torch.Tensor:
    model = model.clone()
    model.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}
    out = run("InstructPixToPixConditioning", positive=te.encode("a house"), negative=te.encode(""),
              vae=vae, pixels=control)
    done = sample(model, out["positive"], None, out["latent"], seed, Steps(3, "simple"), 1.0, "euler", device="cpu")
    return vae.decode(done.latent["samples"], device="cpu")


def _theirs(flux, vae, control: torch.Tensor, lora_file, strength: float = 1.0) -> torch.Tensor:
    from diffusers import FluxControlPipeline

    pipe = FluxControlPipeline(**_pipe_parts(flux, copy.deepcopy(flux.transformer)))  # diffusers widens in place
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(lora_file), adapter_name="control")
    assert pipe.transformer.x_embedder.weight.shape == (128, 128)
    if strength != 1.0:
        pipe.set_adapters("control", strength)
    control_latents = pack(_in_model_space(flux, vae.encode(control, device="cpu")))
    return pipe(prompt="a house", control_image=control_latents, height=64, width=64, num_inference_steps=3,
                guidance_scale=3.5, generator=torch.Generator().manual_seed(8), output_type="pt").images.permute(0, 2, 3, 1)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_flux_control_lora_equals_flux_control_pipeline(flux, lora_file, monkeypatch, strength):
    """At 0.5 the LoRA pairs and biases count half, the norm weights are replaced whole (diffusers
    loads them over the model's; ComfyUI ``set``s them)."""
    _tiny_bfl_converter(monkeypatch)
    base, te, vae = flux_components(flux)
    before = _snapshot(flux.transformer)
    controlled, _ = apply_lora(base, None, read_lora(lora_file), strength, 0.0)
    control = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(12))
    ours = _ours(flux, controlled, te, vae, control)
    theirs = _theirs(flux, vae, control, lora_file, strength)
    assert float((ours - theirs).abs().max()) <= TOL
    # the control image is read through the widened input layer
    other = _ours(flux, controlled, te, vae, torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(13)))
    assert float((ours - other).abs().max()) > 1e-2
    # the base model is untouched
    assert flux.transformer.x_embedder.weight.shape == (128, 64)
    after = _snapshot(flux.transformer)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_base_model_runs_as_before(flux, lora_file):
    """A plain run after a run with the LoRA equals one before it, and the LoRA changes the image."""
    base, te, vae = flux_components(flux)
    base.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}

    def plain() -> torch.Tensor:
        out = sample(base, te.encode("a house"), None, {"samples": torch.zeros(1, 16, 8, 8)}, 8, Steps(3, "simple"),
                     1.0, "euler", device="cpu")
        return out.latent["samples"]

    first = plain()
    controlled, _ = apply_lora(base, None, read_lora(lora_file), 1.0, 0.0)
    with_lora = _ours(flux, controlled, te, vae, torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(12)))
    assert torch.equal(plain(), first)
    assert base.patches == [] and controlled.patches and with_lora.shape == (1, 64, 64, 3)
    with controlled.use("cpu") as unet:  # the widened layer exists inside the LoRA model's use only
        assert unet.x_embedder.weight.shape == (128, 128)
    assert flux.transformer.x_embedder.weight.shape == (128, 64)


def test_comfyui_spelling_gives_the_same_weights(flux, lora_file, tmp_path):
    from nodegen.models.merge import effective_weight

    bfl = control_lora(flux)
    comfy = _save(comfy_spelling(bfl), tmp_path / "comfy-control-lora.safetensors")
    base, _, _ = flux_components(flux)
    a, _ = apply_lora(base, None, read_lora(lora_file), 1.0, 0.0)
    b, _ = apply_lora(base, None, read_lora(comfy), 1.0, 0.0)
    keys = set(a.patches[0][0])
    assert keys == set(b.patches[0][0]) and read_lora(comfy).unknown == []
    assert {"x_embedder.weight", "x_embedder.bias", "transformer_blocks.0.attn.norm_added_k.weight",
            "single_transformer_blocks.1.attn.norm_q.weight", "norm_out.linear.bias"} <= keys
    for key in keys:
        assert torch.equal(effective_weight(a, key, torch.device("cpu")), effective_weight(b, key, torch.device("cpu")))
    wide = effective_weight(a, "x_embedder.weight", torch.device("cpu"))
    assert wide.shape == (128, 128)
    # the base weight zero-padded, plus the LoRA's delta (scale 1: no alpha in the file)
    delta = bfl["img_in.lora_B.weight"] @ bfl["img_in.lora_A.weight"]
    assert torch.allclose(wide[:, :64], flux.transformer.x_embedder.weight + delta[:, :64], atol=1e-6)
    assert torch.allclose(wide[:, 64:], delta[:, 64:], atol=1e-6)
    # the final modulation: ComfyUI's delta on the original (shift, scale) weight, then swapped
    ada = "final_layer.adaLN_modulation.1"
    g = torch.Generator().manual_seed(5)
    bfl[f"{ada}.lora_A.weight"] = torch.randn(bfl[f"{ada}.lora_A.weight"].shape, generator=g)  # halves differ
    c, _ = apply_lora(base, None, read_lora(_save(bfl, tmp_path / "other.safetensors")), 1.0, 0.0)
    original = flux.original_transformer[f"{ada}.weight"] + bfl[f"{ada}.lora_B.weight"] @ bfl[f"{ada}.lora_A.weight"]
    shift, scale = original.chunk(2)
    assert torch.allclose(effective_weight(c, "norm_out.linear.weight", torch.device("cpu")),
                          torch.cat([scale, shift]), atol=1e-6)
    norm = effective_weight(a, "single_transformer_blocks.1.attn.norm_q.weight", torch.device("cpu"))
    assert torch.equal(norm, bfl["single_blocks.1.norm.query_norm.scale"])


def test_a_control_lora_for_a_wider_model_is_refused(flux, tmp_path):
    """An input layer LoRA narrower than the model's (here: for another model) is named, with the file."""
    sd = control_lora(flux)
    sd["img_in.lora_A.weight"] = sd["img_in.lora_A.weight"][:, :32]
    path = _save(sd, tmp_path / "odd-control-lora.safetensors")
    base, _, _ = flux_components(flux)
    with pytest.raises(ValueError, match=r"odd-control-lora.safetensors: its layer img_in takes 32 input features"):
        apply_lora(base, None, read_lora(path), 1.0, 0.0)


def test_with_another_flux_lora_on_the_input_layer(flux, lora_file):
    """A plain Flux LoRA on ``x_embedder`` (64 input features) beside the control LoRA: its delta
    is zero-padded to the widened layer (diffusers pads its lora_A), in either order."""
    from nodegen.models.lora import parse_lora
    from nodegen.models.merge import effective_weight

    g = torch.Generator().manual_seed(3)
    down, up = torch.randn(RANK, 64, generator=g) * 0.1, torch.randn(128, RANK, generator=g) * 0.1
    plain = parse_lora({"transformer.x_embedder.lora_A.weight": down, "transformer.x_embedder.lora_B.weight": up})
    control = control_lora(flux)
    want = torch.cat([flux.transformer.x_embedder.weight.detach(), torch.zeros(128, 64)], dim=1)
    want = want + control["img_in.lora_B.weight"] @ control["img_in.lora_A.weight"]
    want[:, :64] += 0.5 * up @ down
    base, te, vae = flux_components(flux)
    for first, second in (((read_lora(lora_file), 1.0), (plain, 0.5)), ((plain, 0.5), (read_lora(lora_file), 1.0))):
        model, _ = apply_lora(base, None, first[0], first[1], 0.0)
        model, _ = apply_lora(model, None, second[0], second[1], 0.0)
        assert torch.allclose(effective_weight(model, "x_embedder.weight", torch.device("cpu")), want, atol=1e-6)
    image = _ours(flux, model, te, vae, torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(12)))
    assert image.shape == (1, 64, 64, 3) and flux.transformer.x_embedder.weight.shape == (128, 64)


def test_on_flux_schnell_the_guidance_layers_are_skipped(flux, lora_file, caplog):
    """Flux schnell has no guidance embedder: those layers are named in a warning, the rest apply."""
    from nodegen.models.objects import DiffusionModel

    schnell = DiffusionModel(flux.transformer_schnell, "flux", "flow")
    model, _ = apply_lora(schnell, None, read_lora(lora_file), 1.0, 0.0)
    assert "x_embedder.weight" in model.patches[0][0]
    assert not any("guidance" in k for k in model.patches[0][0])
    assert "LoRA layers did not fit" in caplog.text and "guidance_in" in caplog.text


def test_a_control_lora_for_another_width_is_refused(flux, tmp_path):
    sd = control_lora(flux)
    sd["txt_in.lora_B.weight"] = torch.zeros(256, RANK)
    path = _save(sd, tmp_path / "wide-control-lora.safetensors")
    base, _, _ = flux_components(flux)
    with pytest.raises(ValueError, match=r"wide-control-lora.safetensors: its layer txt_in changes 256 rows of a "
                                         r"weight of shape \[128, 192\]"):
        apply_lora(base, None, read_lora(path), 1.0, 0.0)


def test_a_control_lora_on_another_model_family_is_refused(lora_file):
    from diffusers import UNet2DConditionModel

    from nodegen.models.objects import DiffusionModel

    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=32)
    with pytest.raises(ValueError, match=r"flux1-canny-dev-lora.safetensors: this is a Flux.1 control LoRA"):
        apply_lora(DiffusionModel(unet, "sd1"), None, read_lora(lora_file), 1.0, 0.0)


def test_comfyui_flux_canny_lora_workflow_imports_and_runs(flux, lora_file, tmp_path):
    """ComfyUI's Flux Canny LoRA example's shape (API format): UNETLoader + LoraLoaderModelOnly,
    Canny, InstructPixToPixConditioning, FluxGuidance, KSampler."""
    import os

    from PIL import Image

    models = flux_models(flux, tmp_path, name="flux1-dev.safetensors")
    (models / "loras").mkdir()
    os.symlink(lora_file, models / "loras" / "flux1-canny-dev-lora.safetensors")
    Image.effect_mandelbrot((64, 64), (-2, -1.5, 1, 1.5), 40).convert("RGB").save(tmp_path / "in" / "robot.png")
    api = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": "flux1-canny-dev-lora.safetensors",
                                                              "strength_model": 1.0}},
        "3": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
                                                         "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a robot", "clip": ["3", 0]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["3", 0]}},
        "6": {"class_type": "FluxGuidance", "inputs": {"guidance": 30.0, "conditioning": ["4", 0]}},
        "7": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "8": {"class_type": "LoadImage", "inputs": {"image": "robot.png"}},
        "9": {"class_type": "Canny", "inputs": {"low_threshold": 0.15, "high_threshold": 0.3, "image": ["8", 0]}},
        "10": {"class_type": "InstructPixToPixConditioning",
               "inputs": {"positive": ["6", 0], "negative": ["5", 0], "vae": ["7", 0], "pixels": ["9", 0]}},
        "11": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 2, "cfg": 1.0, "sampler_name": "euler",
                                                    "scheduler": "normal", "denoise": 1.0, "model": ["2", 0],
                                                    "positive": ["10", 0], "negative": ["10", 1], "latent_image": ["10", 2]}},
        "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["7", 0]}},
        "13": {"class_type": "SaveImage", "inputs": {"filename_prefix": "canny_lora", "images": ["12", 0]}},
    }
    result = run_api(api, models, tmp_path)
    assert result.images[0].size == (64, 64) and result.images[0].getextrema() != ((0, 0), (0, 0), (0, 0))
