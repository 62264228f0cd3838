"""ControlNet loading (original layout, bare diffusers file, diffusers folder), family
recognition, the LDM conversion proven against diffusers' own converter, the control hook
(range, strength, hint resizing), wrong-base errors, and the nodes (chaining, errors)."""

from __future__ import annotations

import pytest
import torch

from nodegen.kernel.context import CancelToken, RunContext
from nodegen.models.controlnet import ControlNetError, ControlNetModel, load_controlnet
from nodegen.models.controlnet_export import controlnet_to_ldm
from nodegen.models.paths import ModelPaths
from tests.support.controlnet_fixtures import build_controlnet, save_controlnet
from tests.support.fixtures import fixture

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cn(tmp_path_factory):
    root = tmp_path_factory.mktemp("cn")
    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    sdxl = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    folder = root / "controlnet"
    a = save_controlnet(build_controlnet(sd1.unet, seed=5), folder, "cn-sd1")
    b = save_controlnet(build_controlnet(sdxl.unet, seed=7), folder, "cn-sdxl")
    return root, sd1, sdxl, a, b


def sd1_inputs(batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, 8, 8, generator=g), torch.tensor(500.0),
            torch.randn(batch, 77, 64, generator=g))


def sdxl_inputs(batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    pooled = {"text_embeds": torch.randn(batch, 128, generator=g),
              "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]]).repeat(batch, 1)}
    return (torch.randn(batch, 4, 8, 8, generator=g), torch.tensor(300.0),
            torch.randn(batch, 77, 192, generator=g), pooled)


def image(seed=1, h=64, w=64):
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))


def reference(net, x, t, emb, img, scale, added=None):
    kw = {"added_cond_kwargs": added} if added is not None else {}
    with torch.no_grad():
        return net(x, t, encoder_hidden_states=emb, controlnet_cond=img.permute(0, 3, 1, 2),
                   conditioning_scale=scale, return_dict=False, **kw)


@pytest.mark.parametrize("which", ["single_file", "diffusers_file", "diffusers_dir"])
def test_sd1_layouts_equal_diffusers(cn, which):
    _root, _sd1, _sdxl, a, _b = cn
    model = load_controlnet(getattr(a, which))
    assert model.family == "sd1"
    x, t, emb = sd1_inputs()
    img = image()
    down, mid = model.control(img, 0.7).residuals(x, t, emb, None, 0.5)
    ref_down, ref_mid = reference(a.net, x, t, emb, img, 0.7)
    assert len(down) == len(ref_down) == 4  # conv_in, level 1 + downsampler, level 2
    for d, r in zip(down, ref_down, strict=True):
        assert torch.allclose(d, r, atol=1e-6)
    assert torch.allclose(mid, ref_mid, atol=1e-6) and mid.abs().max() > 1e-3


@pytest.mark.parametrize("which", ["single_file", "diffusers_file", "diffusers_dir"])
def test_sdxl_layouts_equal_diffusers(cn, which):
    _root, _sd1, _sdxl, _a, b = cn
    model = load_controlnet(getattr(b, which))
    assert model.family == "sdxl"
    x, t, emb, pooled = sdxl_inputs()
    img = image(2)
    down, mid = model.control(img, 1.0).residuals(x, t, emb, pooled, 0.0)
    ref_down, ref_mid = reference(b.net, x, t, emb, img, 1.0, pooled)
    for d, r in zip(down, ref_down, strict=True):
        assert torch.allclose(d, r, atol=1e-5)
    assert torch.allclose(mid, ref_mid, atol=1e-5)


def test_ldm_export_round_trips_through_diffusers_converter(cn):
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    _root, _sd1, _sdxl, a, _b = cn
    sd = a.net.state_dict()
    ldm = controlnet_to_ldm(sd)
    assert all(k.startswith("control_model.") for k in ldm)
    assert "control_model.input_hint_block.14.weight" in ldm and "control_model.zero_convs.0.0.weight" in ldm
    back = convert_controlnet_checkpoint(ldm, {"layers_per_block": a.net.config.layers_per_block})
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_hook_range_strength_and_hint(cn):
    _root, _sd1, _sdxl, a, _b = cn
    model = ControlNetModel(a.net, "sd1", "x.safetensors")
    x, t, emb = sd1_inputs(batch=2)
    img = image(3)
    c = model.control(img, 1.0, 0.25, 0.5)
    assert c.residuals(x, t, emb, None, 0.1) is None and c.residuals(x, t, emb, None, 0.6) is None
    d1, m1 = c.residuals(x, t, emb, None, 0.25)
    d2, m2 = model.control(img, 2.0, 0.25, 0.5).residuals(x, t, emb, None, 0.5)
    assert torch.allclose(m2, 2 * m1, atol=1e-5) and all(torch.allclose(b, 2 * a_, atol=1e-5)
                                                         for a_, b in zip(d1, d2, strict=True))
    assert d1[0].shape[0] == 2  # the image batch of 1 is repeated for a batch of 2
    # a smaller control image is resized to the latent size x 8 (64 px)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    smooth = torch.stack([xx, yy, xx * yy], -1)[None]
    small = smooth[:, ::2, ::2]
    up = model.control(small, 1.0).hint(1, 64, 64, "cpu", torch.float32)
    assert up.shape == (1, 3, 64, 64)
    assert (up - smooth.permute(0, 3, 1, 2)).abs().max() < 0.05  # half-pixel shift of ::2
    with pytest.raises(ValueError, match="start_percent"):
        model.control(img, 1.0, 0.8, 0.2)


def test_wrong_base_names_both(cn):
    from nodegen.models.objects import DiffusionModel, TextEncoder
    from tests.support.sampling import sample

    _root, sd1, _sdxl, _a, b = cn
    xl = load_controlnet(b.single_file)
    x, t, emb = sd1_inputs()
    with pytest.raises(ControlNetError, match=r"'cn-sdxl.safetensors' is made for SDXL models .* but the "
                                              r"model being sampled is a model with 64-wide"):
        xl.control(image(), 1.0).residuals(x, t, emb, None, 0.0)
    # the other way round: an SD1 ControlNet on an SDXL model (pooled embeddings)
    sd1_cn = load_controlnet(cn[3].single_file)
    xx, tt, emb_xl, pooled = sdxl_inputs()
    with pytest.raises(ControlNetError, match=r"'cn-sd1.safetensors' is made for SD1.x models .* the model "
                                              r"being sampled is SDXL \(text embeddings 192 wide, pooled\)"):
        sd1_cn.control(image(), 1.0).residuals(xx, tt, emb_xl, pooled, 0.0)
    # and through a real sampling run of the SD1 model
    from nodegen.nodes.controlnet import controlnet_apply

    model = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    # refused when applied (before any sampling), naming the file and both families
    with pytest.raises(ControlNetError, match=r"'cn-sdxl.safetensors' is made for SDXL models .* comes from "
                                              r"models with 64-wide"):
        controlnet_apply.run(None, conditioning=te.encode("a cat"), control_net=xl, image=image(), strength=1.0)
    assert model is not None and sample is not None


def test_nodes_load_chain_and_errors(cn, tmp_path):
    from nodegen.diffusion.conditioning import CondItem
    from nodegen.nodes.controlnet import controlnet_apply, controlnet_apply_advanced, controlnet_loader

    root, _sd1, _sdxl, a, _b = cn
    ctx = RunContext(node_id="9", node_title="CN", device="cpu", models=None,
                     paths=ModelPaths([root], use_env=False, use_config=False), output_dir=str(root),
                     input_dir=str(root), temp_dir=str(root), workflow=None, cancel=CancelToken())
    env = type("Env", (), {"paths": ctx.paths})()
    names = controlnet_loader.input("control_net_name").choice_list(env)
    assert {"cn-sd1.safetensors", "cn-sd1-diffusers.safetensors", "cn-sdxl.safetensors"} <= set(names)
    m1 = controlnet_loader.run(ctx, control_net_name="cn-sd1.safetensors")
    m2 = controlnet_loader.run(ctx, control_net_name=str(a.diffusers_dir))
    assert controlnet_loader.fingerprint({"control_net_name": "cn-sd1.safetensors"}, env)[1] > 0
    cond = [CondItem(torch.zeros(1, 77, 64), None, {"strength": 1.0})]
    c1 = controlnet_apply.run(ctx, conditioning=cond, control_net=m1, image=image(), strength=0.5)
    pos, neg = controlnet_apply_advanced.run(ctx, positive=c1, negative=cond, control_net=m2,
                                             image=image(4), strength=0.7, start_percent=0.1,
                                             end_percent=0.9)
    assert "controls" not in cond[0].extras  # inputs untouched
    assert [c.strength for c in c1[0].extras["controls"]] == [0.5]
    assert [c.strength for c in pos[0].extras["controls"]] == [0.5, 0.7]
    assert neg[0].extras["controls"][0] is pos[0].extras["controls"][1]
    assert pos[0].extras["strength"] == 1.0
    assert controlnet_apply.run(ctx, conditioning=cond, control_net=m1, image=image(), strength=0.0) is cond
    with pytest.raises(ValueError, match="start_percent .* must not exceed end_percent"):
        controlnet_apply_advanced.run(ctx, positive=cond, negative=cond, control_net=m1, image=image(),
                                      strength=1.0, start_percent=0.9, end_percent=0.1)
    with pytest.raises(ValueError, match="ControlNetLoader: control_net_name 'nope.safetensors' was not found"):
        controlnet_loader.run(ctx, control_net_name="nope.safetensors")
    from safetensors.torch import save_file

    bad = root / "controlnet" / "not-cn.safetensors"
    save_file({"model.0.weight": torch.zeros(4, 3, 3, 3)}, str(bad))
    with pytest.raises(ControlNetError, match="not-cn.safetensors is not a ControlNet"):
        controlnet_loader.run(ctx, control_net_name="not-cn.safetensors")


def test_sd2_family_and_output(tmp_path_factory):
    sd2 = fixture("sd2", tmp_path_factory.mktemp("sd2"))
    net = build_controlnet(sd2.unet, seed=11)
    files = save_controlnet(net, tmp_path_factory.mktemp("cn2"), "cn-sd2")
    model = load_controlnet(files.single_file)
    assert model.family == "sd2" and model.net.config.use_linear_projection
    assert list(model.net.config.attention_head_dim) == list(net.config.attention_head_dim)
    x, t, emb = sd1_inputs()
    img = image(5)
    down, mid = model.control(img, 1.0).residuals(x, t, emb, None, 0.3)
    ref_down, ref_mid = reference(net, x, t, emb, img, 1.0)
    assert torch.allclose(mid, ref_mid, atol=1e-5)
    assert all(torch.allclose(d, r, atol=1e-5) for d, r in zip(down, ref_down, strict=True))


def test_fp16_variant_folder(cn, tmp_path):
    """A diffusers folder holding only diffusion_pytorch_model.fp16.safetensors loads (as fp32)."""
    import copy

    _root, _sd1, _sdxl, a, _b = cn
    half = copy.deepcopy(a.net).to(torch.float16)
    half.save_pretrained(str(tmp_path / "cn-fp16"), variant="fp16")
    assert not (tmp_path / "cn-fp16" / "diffusion_pytorch_model.safetensors").exists()
    model = load_controlnet(tmp_path / "cn-fp16")
    assert next(model.net.parameters()).dtype == torch.float32
    x, t, emb = sd1_inputs()
    img = image()
    _down, mid = model.control(img, 1.0).residuals(x, t, emb, None, 0.5)
    _rd, ref_mid = reference(a.net, x, t, emb, img, 1.0)
    assert (mid - ref_mid).abs().max() <= 1e-2 * ref_mid.abs().max()
