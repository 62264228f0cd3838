"""Flux.1 ControlNets (diffusers layout: InstantX, Shakker) == diffusers' FluxControlNetPipeline on
tiny random-weight components (max abs pixel difference <= 1e-3, fp32 CPU); ComfyUI's Flux
ControlNet workflow (ControlNetLoader, ControlNetApplyAdvanced with the VAE) imports and runs; what
cannot work is refused naming the node and input."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nodegen.diffusion.conditioning import CondItem
from nodegen.diffusion.flow_sampling import flux_mu
from nodegen.diffusion.sample import Steps, sample
from nodegen.models.control_files import load_control
from nodegen.models.flow_text import FlowTextEncoder
from nodegen.models.flux_controlnet import FluxControlNet
from nodegen.models.objects import DiffusionModel, VAEModel
from tests.support.comfy_run import flux_models, run_api
from tests.support.fixtures import _randomize_
from tests.support.flow_fixtures import T5_WIDTH, _save, fixture
from tests.support.nodes import run

torch.set_num_threads(1)
TOL = 1e-3
CTX = SimpleNamespace(device="cpu", models=None)


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return fixture("flux", tmp_path_factory.mktemp("flux"))


def _controlnet(seed: int = 90, **extra):
    from diffusers import FluxControlNetModel

    torch.manual_seed(seed)
    net = FluxControlNetModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=128,
                              num_attention_heads=1, joint_attention_dim=T5_WIDTH, pooled_projection_dim=64,
                              guidance_embeds=True, axes_dims_rope=(16, 56, 56), **extra)
    _randomize_(net, seed + 1)  # the zero-initialised control blocks too: residuals that matter
    return net.eval()


@pytest.fixture(scope="module")
def controlnet_file(tmp_path_factory):
    net = _controlnet()
    path = _save({k: v.contiguous() for k, v in net.state_dict().items()},
                 tmp_path_factory.mktemp("cn") / "flux-controlnet-canny.safetensors")
    return net, path


def _parts(fx):
    te = FlowTextEncoder("flux", {"clip_l": (fx.tokenizer, fx.text_encoder), "t5": (fx.tokenizer_2, fx.text_encoder_2)})
    model = DiffusionModel(fx.transformer, "flux", "flow")
    model.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}
    return model, te, VAEModel.from_vae(fx.vae)


def test_a_diffusers_layout_file_loads_with_its_configuration(controlnet_file):
    net, path = controlnet_file
    loaded = load_control(path)
    assert isinstance(loaded, FluxControlNet) and not loaded.takes_pixels
    cfg = loaded.net.config
    assert (cfg.num_layers, cfg.num_single_layers, cfg.joint_attention_dim, cfg.guidance_embeds) == (1, 1, T5_WIDTH, True)
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[k], v), k


def test_flux_controlnet_equals_flux_controlnet_pipeline(flux, controlnet_file, monkeypatch):
    """The pipeline encodes the control image itself; its encode is made to take the distribution's
    mode, as ours does (ComfyUI's too), instead of a sample."""
    import diffusers.pipelines.flux.pipeline_flux_controlnet as fcp
    from diffusers import FluxControlNetPipeline

    monkeypatch.setattr(fcp, "retrieve_latents", lambda enc, generator=None, sample_mode="sample": enc.latent_dist.mode())
    net, path = controlnet_file
    model, te, vae = _parts(flux)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(21))
    pos, neg = te.encode("a house"), te.encode("")
    out = run("ControlNetApplyAdvanced", CTX, positive=[c.copy(extras={"guidance": 3.5}) for c in pos], negative=neg,
              control_net=load_control(path), image=image, strength=0.7, start_percent=0.0, end_percent=1.0, vae=vae)
    ours = sample(model, out["positive"], None, {"samples": torch.zeros(1, 16, 8, 8)}, 4, Steps(3, "simple"), 1.0,
                  "euler", device="cpu")
    ours_img = vae.decode(ours.latent["samples"], device="cpu")
    pipe = FluxControlNetPipeline(transformer=flux.transformer, scheduler=flux.scheduler, vae=flux.vae,
                                  text_encoder=flux.text_encoder, tokenizer=flux.tokenizer,
                                  text_encoder_2=flux.text_encoder_2, tokenizer_2=flux.tokenizer_2, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    # a tensor control image goes to the pipeline's VAE as it is: already in [-1, 1]
    theirs = pipe(prompt="a house", control_image=image.permute(0, 3, 1, 2) * 2 - 1, controlnet_conditioning_scale=0.7,
                  height=64, width=64, num_inference_steps=3, guidance_scale=3.5,
                  generator=torch.Generator().manual_seed(4), output_type="pt").images
    assert float((ours_img - theirs.permute(0, 2, 3, 1)).abs().max()) <= TOL
    # the control matters: without it the image differs
    plain = sample(model, [c.copy(extras={"guidance": 3.5}) for c in pos], None, {"samples": torch.zeros(1, 16, 8, 8)},
                   4, Steps(3, "simple"), 1.0, "euler", device="cpu")
    assert float((vae.decode(plain.latent["samples"], device="cpu") - ours_img).abs().max()) > 1e-2


def test_outside_its_range_a_control_changes_nothing(flux, controlnet_file):
    _, path = controlnet_file
    model, te, vae = _parts(flux)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(22))
    pos = [c.copy(extras={"guidance": 3.5}) for c in te.encode("a tree")]
    late = run("ControlNetApplyAdvanced", CTX, positive=pos, negative=pos, control_net=load_control(path), image=image,
               strength=1.0, start_percent=0.99, end_percent=1.0, vae=vae)["positive"]
    empty = {"samples": torch.zeros(1, 16, 8, 8)}
    a = sample(model, late, None, empty, 6, Steps(2, "simple"), 1.0, "euler", device="cpu").latent["samples"]
    b = sample(model, pos, None, empty, 6, Steps(2, "simple"), 1.0, "euler", device="cpu").latent["samples"]
    assert torch.equal(a, b)


def test_what_cannot_work_is_refused(flux, controlnet_file, tmp_path):
    from tests.support.fixtures import fixture as sd_fixture

    _, path = controlnet_file
    model, te, vae = _parts(flux)
    image = torch.rand(1, 64, 64, 3)
    pos = te.encode("x")
    with pytest.raises(ValueError, match="ControlNetApplyAdvanced: vae: .*connect the model's VAE"):
        run("ControlNetApplyAdvanced", CTX, positive=pos, negative=pos, control_net=load_control(path), image=image)
    with pytest.raises(ValueError, match="is a Flux.1 ControlNet .* not a Flux text encoding"):
        run("ControlNetApplyAdvanced", CTX, positive=[CondItem(torch.zeros(1, 77, 768))], negative=pos,
            control_net=load_control(path), image=image, vae=vae)
    with pytest.raises(ValueError, match="not a union ControlNet"):
        run("SetUnionControlNetType", CTX, control_net=load_control(path), type="depth")
    union = load_control(_save({k: v.contiguous() for k, v in _controlnet(92, num_mode=3).state_dict().items()},
                               tmp_path / "flux-union.safetensors"))
    tile = run("SetUnionControlNetType", CTX, control_net=union, type="tile")["control_net"]  # ComfyUI's number 6
    with pytest.raises(ValueError, match="has 3 modes; type 'tile' is ComfyUI's number 6"):
        tile.mode()
    from nodegen.models.controlnet import ControlNetError, ControlNetModel
    from tests.support.controlnet_fixtures import build_controlnet

    sd1_cn = ControlNetModel(build_controlnet(sd_fixture("sd1").unet), "sd1", "control_sd15_canny.safetensors")
    with pytest.raises(ControlNetError, match="made for SD1"):
        run("ControlNetApply", CTX, conditioning=pos, control_net=sd1_cn, image=image)
    smuggled = [pos[0].copy(extras={"controls": [sd1_cn.control(image)]})]  # past the node's check
    with pytest.raises(ValueError, match="is an SD1/SD2/SDXL ControlNet .* cannot control this flux model"):
        sample(model, smuggled, None, {"samples": torch.zeros(1, 16, 8, 8)}, 1, Steps(1, "simple"), 1.0, "euler",
               device="cpu")


def test_a_union_model_with_a_type_equals_the_pipeline_with_that_mode(flux, monkeypatch, tmp_path):
    """SetUnionControlNetType's choice goes in as ComfyUI's type number ("depth": 1), as
    FluxControlNetPipeline's control_mode."""
    import diffusers.pipelines.flux.pipeline_flux_controlnet as fcp
    from diffusers import FluxControlNetPipeline

    monkeypatch.setattr(fcp, "retrieve_latents", lambda enc, generator=None, sample_mode="sample": enc.latent_dist.mode())
    net = _controlnet(93, num_mode=10)
    union = load_control(_save({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "union-pro.safetensors"))
    model, te, vae = _parts(flux)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(23))
    depth = run("SetUnionControlNetType", CTX, control_net=union, type="depth")["control_net"]
    pos = [c.copy(extras={"guidance": 3.5}) for c in te.encode("a street")]
    out = run("ControlNetApplyAdvanced", CTX, positive=pos, negative=pos, control_net=depth, image=image, strength=0.8,
              vae=vae)
    ours = sample(model, out["positive"], None, {"samples": torch.zeros(1, 16, 8, 8)}, 5, Steps(2, "simple"), 1.0,
                  "euler", device="cpu")
    pipe = FluxControlNetPipeline(transformer=flux.transformer, scheduler=flux.scheduler, vae=flux.vae,
                                  text_encoder=flux.text_encoder, tokenizer=flux.tokenizer,
                                  text_encoder_2=flux.text_encoder_2, tokenizer_2=flux.tokenizer_2, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt="a street", control_image=image.permute(0, 3, 1, 2) * 2 - 1, control_mode=1,
                  controlnet_conditioning_scale=0.8, height=64, width=64, num_inference_steps=2, guidance_scale=3.5,
                  generator=torch.Generator().manual_seed(5), output_type="pt").images
    assert float((vae.decode(ours.latent["samples"], device="cpu") - theirs.permute(0, 2, 3, 1)).abs().max()) <= TOL


def test_a_union_model_without_a_type_adds_no_mode_token(flux, tmp_path):
    """ComfyUI's "auto" (no SetUnionControlNetType): the residuals are those of the same weights
    without a mode embedder, and differ from any mode's."""
    from nodegen.diffusion.flow_forward import pack

    union_net = _controlnet(94, num_mode=4)
    plain_net = _controlnet(95)
    plain_net.load_state_dict({k: v for k, v in union_net.state_dict().items() if "mode_embedder" not in k})
    _, te, vae = _parts(flux)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(24))
    text = te.encode("a car")[0]
    hidden = torch.randn(1, 16, 64, generator=torch.Generator().manual_seed(25))
    inputs = dict(timestep=torch.tensor([0.5]), guidance=torch.tensor([3.5]), pooled_projections=text.pooled,
                  encoder_hidden_states=text.embeds, txt_ids=torch.zeros(text.embeds.shape[1], 3),
                  img_ids=torch.zeros(16, 3))

    def residuals(control_net):
        with torch.no_grad():
            return control_net.control(image, 1.0, 0.0, 1.0, vae=vae).residuals(hidden, 8, 8, pack, **dict(inputs))

    auto = residuals(FluxControlNet(union_net))
    plain = residuals(FluxControlNet(plain_net))
    typed = residuals(FluxControlNet(union_net).with_type("openpose"))
    assert all(torch.equal(a, b) for a, b in zip(auto[0], plain[0], strict=True))
    assert not torch.allclose(auto[0][0], typed[0][0])
    assert union_net.union  # the switch is restored after the call


def _to_xlabs(net) -> dict:
    """A hint-block FluxControlNetModel's tensors in XLabs' own layout (as their files hold them)."""
    from nodegen.models.flux_controlnet import XLABS_HINT
    from tests.support.flow_convert import flux_to_original

    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    width = sd["x_embedder.weight"].shape[0]
    dummy = {f"norm_out.linear.{k}": torch.zeros(2 * width, *([width] if k == "weight" else [])) for k in ("weight", "bias")}
    out = {k: v for k, v in flux_to_original({**sd, **dummy}).items() if not k.startswith("final_layer.")}
    for kind in ("weight", "bias"):
        out[f"pos_embed_input.{kind}"] = sd[f"controlnet_x_embedder.{kind}"]
        for i, name in XLABS_HINT.items():
            out[f"input_hint_block.{i}.{kind}"] = sd[f"input_hint_block.{name}.{kind}"]
    out.update({k: v for k, v in sd.items() if k.startswith("controlnet_blocks.")})
    return out


def test_an_xlabs_file_equals_the_pipeline_with_its_diffusers_form(flux, tmp_path):
    """XLabs' layout (BFL block names, pos_embed_input, an 8-convolution hint encoder): converted on
    load; the control image goes in as pixels in [-1, 1], no VAE; the blocks repeat over the
    transformer's (diffusers' controlnet_blocks_repeat)."""
    from diffusers import FluxControlNetModel, FluxControlNetPipeline

    torch.manual_seed(96)
    net = FluxControlNetModel(patch_size=2, in_channels=64, num_layers=1, num_single_layers=0, attention_head_dim=128,
                              num_attention_heads=1, joint_attention_dim=T5_WIDTH, pooled_projection_dim=64,
                              guidance_embeds=True, axes_dims_rope=(16, 56, 56), conditioning_embedding_channels=16)
    _randomize_(net, 97)
    net.eval()
    loaded = load_control(_save(_to_xlabs(net), tmp_path / "flux-canny-controlnet-v3.safetensors"))
    assert isinstance(loaded, FluxControlNet) and loaded.takes_pixels
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[k], v), k
    model, te, vae = _parts(flux)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(26))
    pos = [c.copy(extras={"guidance": 3.5}) for c in te.encode("a bridge")]
    out = run("ControlNetApplyAdvanced", CTX, positive=pos, negative=pos, control_net=loaded, image=image,
              strength=0.9)  # no VAE needed
    ours = sample(model, out["positive"], None, {"samples": torch.zeros(1, 16, 8, 8)}, 6, Steps(2, "simple"), 1.0,
                  "euler", device="cpu")
    pipe = FluxControlNetPipeline(transformer=flux.transformer, scheduler=flux.scheduler, vae=flux.vae,
                                  text_encoder=flux.text_encoder, tokenizer=flux.tokenizer,
                                  text_encoder_2=flux.text_encoder_2, tokenizer_2=flux.tokenizer_2, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt="a bridge", control_image=image.permute(0, 3, 1, 2) * 2 - 1, controlnet_conditioning_scale=0.9,
                  height=64, width=64, num_inference_steps=2, guidance_scale=3.5,
                  generator=torch.Generator().manual_seed(6), output_type="pt").images
    assert float((vae.decode(ours.latent["samples"], device="cpu") - theirs.permute(0, 2, 3, 1)).abs().max()) <= TOL


def test_comfyui_flux_controlnet_workflow_imports_and_runs(flux, controlnet_file, tmp_path):
    from PIL import Image

    _, path = controlnet_file
    models = flux_models(flux, tmp_path, name="flux1-dev.safetensors",
                         extra=[("controlnet", path, "FLUX.1-dev-Controlnet-Canny.safetensors")])
    Image.effect_mandelbrot((64, 64), (-2, -1.5, 1, 1.5), 40).convert("RGB").save(tmp_path / "in" / "edges.png")
    api = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
                                                         "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle", "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}},
        "5": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["3", 0]}},
        "6": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "7": {"class_type": "LoadImage", "inputs": {"image": "edges.png"}},
        "8": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "FLUX.1-dev-Controlnet-Canny.safetensors"}},
        "9": {"class_type": "ControlNetApplyAdvanced",
              "inputs": {"strength": 0.6, "start_percent": 0.0, "end_percent": 0.8, "positive": ["5", 0],
                         "negative": ["4", 0], "control_net": ["8", 0], "image": ["7", 0], "vae": ["6", 0]}},
        "10": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "11": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 2, "cfg": 1.0, "sampler_name": "euler",
                                                    "scheduler": "simple", "denoise": 1.0, "model": ["1", 0],
                                                    "positive": ["9", 0], "negative": ["9", 1], "latent_image": ["10", 0]}},
        "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["6", 0]}},
        "13": {"class_type": "SaveImage", "inputs": {"filename_prefix": "cn", "images": ["12", 0]}},
    }
    result = run_api(api, models, tmp_path)
    assert result.images[0].size == (64, 64)
