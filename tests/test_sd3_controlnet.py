"""SD3 / SD 3.5 ControlNets (diffusers layout: InstantX's, and SD 3.5 large's without a position
embedding) == diffusers' StableDiffusion3ControlNetPipeline on tiny random-weight components (max
abs pixel difference <= 1e-3, fp32 CPU, CFG > 1, strength < 1); ComfyUI's SD3 ControlNet workflow
(ControlNetLoader, ControlNetApplyAdvanced with the VAE) imports and runs; what cannot work is
refused naming the node and input (or the file)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from nodegen.diffusion.conditioning import CondItem
from nodegen.diffusion.sample import Steps, sample
from nodegen.models.control_files import load_control
from nodegen.models.controlnet import ControlNetError
from nodegen.models.flow_text import FlowTextEncoder
from nodegen.models.objects import DiffusionModel, VAEModel
from nodegen.models.sd3_controlnet import SD3ControlNet, SD3ControlNetError
from tests.support.fixtures import _randomize_
from tests.support.flow_fixtures import T5_WIDTH, _save, fixture
from tests.support.nodes import run

torch.set_num_threads(1)
TOL = 1e-3
CTX = SimpleNamespace(device="cpu", models=None)
POOLED = 64 + 128  # the SD3 fixture's CLIP-L + CLIP-G pooled width


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return fixture("sd3", tmp_path_factory.mktemp("sd3"))


def _controlnet(kind: str, seed: int = 70, **extra):
    """A tiny ``SD3ControlNetModel`` for the SD3 fixture's transformer (2 heads of 64):
    "instantx" (own position embedding, joint blocks reading the text) or "sd35" (SD 3.5 large's:
    no position embedding, single blocks, no text)."""
    from diffusers import SD3ControlNetModel

    torch.manual_seed(seed)
    common = dict(sample_size=8, patch_size=2, in_channels=16, out_channels=16, attention_head_dim=64,
                  num_attention_heads=2, pooled_projection_dim=POOLED, **extra)
    if kind == "instantx":
        net = SD3ControlNetModel(num_layers=2, joint_attention_dim=T5_WIDTH, caption_projection_dim=128,
                                 pos_embed_max_size=16, **common)
    else:
        net = SD3ControlNetModel(num_layers=1, joint_attention_dim=None, caption_projection_dim=128,
                                 pos_embed_type=None, use_pos_embed=False, force_zeros_for_pooled_projection=False,
                                 **common)
    _randomize_(net, seed + 1)  # the zero-initialised control blocks too: residuals that matter
    with torch.no_grad():
        for block in net.controlnet_blocks:  # residuals large enough to show in the pixels
            block.weight.mul_(10.0)
    return net.eval()


def _state(net) -> dict:
    return {k: v.detach().contiguous() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def controlnets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd3cn")
    out = {}
    for kind in ("instantx", "sd35"):
        net = _controlnet(kind)
        out[kind] = (net, _save(_state(net), root / f"sd3-controlnet-{kind}.safetensors"))
    return out


def _parts(fx):
    te = FlowTextEncoder("sd3", {"clip_l": (fx.tokenizer, fx.text_encoder), "clip_g": (fx.tokenizer_2, fx.text_encoder_2),
                                 "t5": (fx.tokenizer_3, fx.text_encoder_3)})
    return DiffusionModel(fx.transformer, "sd3", "flow"), te, VAEModel.from_vae(fx.vae)


@pytest.mark.parametrize("kind", ["instantx", "sd35"])
def test_diffusers_layout_files_and_folders_load_with_their_configuration(controlnets, kind, tmp_path):
    net, path = controlnets[kind]
    folder = tmp_path / "folder"
    net.save_pretrained(str(folder))
    for loaded in (load_control(path), load_control(folder)):
        assert isinstance(loaded, SD3ControlNet) and loaded.reads_text == (kind == "instantx")
        cfg, want = loaded.net.config, net.config
        for key in ("num_layers", "num_attention_heads", "joint_attention_dim", "pooled_projection_dim",
                    "use_pos_embed", "force_zeros_for_pooled_projection", "extra_conditioning_channels", "qk_norm"):
            assert cfg[key] == want[key], key
        assert set(loaded.net.state_dict()) == set(net.state_dict())
        for k, v in net.state_dict().items():
            assert torch.equal(loaded.net.state_dict()[k], v), k


@pytest.mark.parametrize("kind", ["instantx", "sd35"])
def test_sd3_controlnet_equals_sd3_controlnet_pipeline(sd3, controlnets, kind, monkeypatch):
    """The pipeline encodes the control image itself with ``latent_dist.sample()``; that is made
    to take the distribution's mode, as ours does (ComfyUI's too), instead of a sample."""
    from diffusers import StableDiffusion3ControlNetPipeline
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())
    net, path = controlnets[kind]
    model, te, vae = _parts(sd3)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(31))
    pos, neg = te.encode("a house"), te.encode("blurry")
    out = run("ControlNetApplyAdvanced", CTX, positive=pos, negative=neg, control_net=load_control(path), image=image,
              strength=0.7, start_percent=0.0, end_percent=1.0, vae=vae)
    empty = {"samples": torch.zeros(1, 16, 8, 8)}
    ours = sample(model, out["positive"], out["negative"], empty, 4, Steps(3, "normal"), 5.0, "euler", device="cpu")
    ours_img = vae.decode(ours.latent["samples"], device="cpu")
    parts = {k: getattr(sd3, k) for k in ("transformer", "scheduler", "vae", "text_encoder", "tokenizer",
                                          "text_encoder_2", "tokenizer_2", "text_encoder_3", "tokenizer_3")}
    pipe = StableDiffusion3ControlNetPipeline(**parts, controlnet=copy.deepcopy(net))  # it gives SD 3.5's a pos_embed
    pipe.set_progress_bar_config(disable=True)
    # a tensor control image goes to the pipeline's VAE as it is: already in [-1, 1]
    theirs = pipe(prompt="a house", negative_prompt="blurry", control_image=image.permute(0, 3, 1, 2) * 2 - 1,
                  controlnet_conditioning_scale=0.7, height=64, width=64, num_inference_steps=3, guidance_scale=5.0,
                  generator=torch.Generator().manual_seed(4), output_type="pt").images
    assert float((ours_img - theirs.permute(0, 2, 3, 1)).abs().max()) <= TOL
    # the control matters: without it the image differs
    plain = sample(model, pos, neg, empty, 4, Steps(3, "normal"), 5.0, "euler", device="cpu")
    assert float((vae.decode(plain.latent["samples"], device="cpu") - ours_img).abs().max()) > 1e-2


def test_two_controlnets_equal_the_multi_controlnet_pipeline(sd3, controlnets, tmp_path, monkeypatch):
    """Two ControlNets applied one after the other add up as diffusers' SD3MultiControlNetModel adds them."""
    from diffusers import StableDiffusion3ControlNetPipeline
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())
    first, first_path = controlnets["instantx"]
    second = _controlnet("instantx", 80)
    second_path = _save(_state(second), tmp_path / "sd3-controlnet-depth.safetensors")
    model, te, vae = _parts(sd3)
    images = [torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(s)) for s in (33, 34)]
    pos, neg = te.encode("a bridge"), te.encode("")
    for path, image, strength in ((first_path, images[0], 0.6), (second_path, images[1], 0.9)):
        out = run("ControlNetApplyAdvanced", CTX, positive=pos, negative=neg, control_net=load_control(path),
                  image=image, strength=strength, vae=vae)
        pos, neg = out["positive"], out["negative"]
    ours = sample(model, pos, neg, {"samples": torch.zeros(1, 16, 8, 8)}, 5, Steps(2, "normal"), 4.0, "euler",
                  device="cpu")
    parts = {k: getattr(sd3, k) for k in ("transformer", "scheduler", "vae", "text_encoder", "tokenizer",
                                          "text_encoder_2", "tokenizer_2", "text_encoder_3", "tokenizer_3")}
    pipe = StableDiffusion3ControlNetPipeline(**parts, controlnet=[first, second])
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt="a bridge", control_image=[i.permute(0, 3, 1, 2) * 2 - 1 for i in images],
                  controlnet_conditioning_scale=[0.6, 0.9], height=64, width=64, num_inference_steps=2,
                  guidance_scale=4.0, generator=torch.Generator().manual_seed(5), output_type="pt").images
    assert float((vae.decode(ours.latent["samples"], device="cpu") - theirs.permute(0, 2, 3, 1)).abs().max()) <= TOL


def test_outside_its_range_a_control_changes_nothing_and_controls_add_up(sd3, controlnets):
    model, te, vae = _parts(sd3)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(32))
    pos, neg = te.encode("a tree"), te.encode("")
    empty = {"samples": torch.zeros(1, 16, 8, 8)}

    def apply(cond, kind, start=0.0, end=1.0):
        return run("ControlNetApplyAdvanced", CTX, positive=cond[0], negative=cond[1],
                   control_net=load_control(controlnets[kind][1]), image=image, strength=0.8,
                   start_percent=start, end_percent=end, vae=vae)

    def latent(cond):
        return sample(model, cond[0], cond[1], empty, 6, Steps(2, "simple"), 3.0, "euler", device="cpu").latent["samples"]

    late = apply((pos, neg), "instantx", 0.5, 1.0)  # the steps sample at progress 0 and 0.25 (shift 3)
    plain = latent((pos, neg))
    assert torch.equal(latent((late["positive"], late["negative"])), plain)
    # an InstantX and an SD 3.5 ControlNet together (2 and 1 residuals spread over the blocks)
    one = apply((pos, neg), "instantx")
    both = apply((one["positive"], one["negative"]), "sd35")
    a, b = latent((one["positive"], one["negative"])), latent((both["positive"], both["negative"]))
    assert not torch.equal(a, plain) and float((a - b).abs().max()) > 1e-4


def test_what_cannot_work_is_refused(sd3, controlnets, tmp_path):
    from diffusers import FluxControlNetModel

    from nodegen.diffusion.flow_forward import run_flow
    from nodegen.models.flux_controlnet import FluxControlNet

    _, path = controlnets["instantx"]
    model, te, vae = _parts(sd3)
    image = torch.rand(1, 64, 64, 3)
    pos = te.encode("x")
    empty = {"samples": torch.zeros(1, 16, 8, 8)}
    sd3_cn = load_control(path)
    with pytest.raises(ValueError, match="ControlNetApplyAdvanced: vae: .*connect the model's VAE"):
        run("ControlNetApplyAdvanced", CTX, positive=pos, negative=pos, control_net=sd3_cn, image=image)
    with pytest.raises(ControlNetError, match="ControlNetApplyAdvanced: positive: .*SD3 / SD 3.5 ControlNet "
                                              ".*no pooled embedding: it is not an SD3 text encoding"):
        run("ControlNetApplyAdvanced", CTX, positive=[CondItem(torch.zeros(1, 77, 768))], negative=pos,
            control_net=sd3_cn, image=image, vae=vae)
    flux_like = [CondItem(torch.zeros(1, 256, T5_WIDTH), torch.zeros(1, 64))]  # the Flux fixture's widths
    with pytest.raises(ControlNetError, match="ControlNetApplyAdvanced: negative: .*64-wide pooled embedding"):
        run("ControlNetApplyAdvanced", CTX, positive=pos, negative=flux_like, control_net=sd3_cn, image=image, vae=vae)
    # a Flux ControlNet on SD3 conditioning, and (past the node) on an SD3 model
    torch.manual_seed(0)
    flux_cn = FluxControlNet(FluxControlNetModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                                 attention_head_dim=128, num_attention_heads=1,
                                                 joint_attention_dim=T5_WIDTH, pooled_projection_dim=64,
                                                 guidance_embeds=True, axes_dims_rope=(16, 56, 56)), "flux-canny")
    with pytest.raises(ControlNetError, match="ControlNetApplyAdvanced: positive: .*is a Flux.1 ControlNet .*not a "
                                              "Flux text encoding"):
        run("ControlNetApplyAdvanced", CTX, positive=pos, negative=pos, control_net=flux_cn, image=image, vae=vae)
    smuggled = [pos[0].copy(extras={"controls": [flux_cn.control(image, vae=vae)]})]
    with pytest.raises(ValueError, match="is a Flux.1 ControlNet; it cannot control this sd3 model"):
        sample(model, smuggled, None, empty, 1, Steps(1, "normal"), 1.0, "euler", device="cpu")
    # an SD3 ControlNet (past the node) on a Flux model
    smuggled = [flux_like[0].copy(extras={"controls": [sd3_cn.control(image, vae=vae)]})]
    with pytest.raises(ValueError, match="is an SD3 / SD 3.5 ControlNet; it cannot control this flux model"):
        run_flow("flux", None, torch.zeros(1, 16, 8, 8), 1.0, None, smuggled, "cpu", torch.float32)
    # an incomplete file in Stability's own SD 3.5 ControlNet layout (tests/test_sd35_controlnet.py: whole
    # ones; inpainting ControlNets: tests/test_controlnet_inpainting.py)
    stability = _save({"pos_embed_input.proj.weight": torch.zeros(128, 16, 2, 2), "control_type": torch.tensor([1.0]),
                       "transformer_blocks.0.adaLN_modulation.1.bias": torch.zeros(768),
                       "controlnet_blocks.0.weight": torch.zeros(128, 128)},
                      tmp_path / "sd3.5_large_controlnet_canny.safetensors")
    with pytest.raises(SD3ControlNetError, match="sd3.5_large_controlnet_canny.safetensors: an SD 3.5 ControlNet in Stability's layout without "):
        load_control(stability)


def test_comfyui_sd3_controlnet_workflow_imports_and_runs(sd3, controlnets, tmp_path):
    from tests.support.comfy_controlnet import run_sd3_controlnet_workflow

    result, _ = run_sd3_controlnet_workflow(tmp_path, sd3.single_file, "sd3_medium_incl_clips_t5xxlfp16.safetensors",
                                            controlnets["instantx"][1], "SD3-Controlnet-Canny.safetensors")
    assert result.ok, (result.problems, [str(f) for f in result.failures])
    assert result.images[0].size == (64, 64)
