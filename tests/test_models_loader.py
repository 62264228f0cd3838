"""Loading single files and diffusers folders: same weights give the same outputs; fp16 and
.ckpt files; detection of every fixture kind; clear errors."""

from __future__ import annotations

import pytest
import torch

from nodegen.models.detect import ModelKindError, detect
from nodegen.models.files import ModelFileError, read_shapes
from nodegen.models.loader import load_checkpoint, load_vae
from tests.support.fixtures import fixture

torch.set_num_threads(1)
FAMILIES = ["sd1", "sd2", "sdxl", "sdxl_refiner", "sd1_inpaint"]


@pytest.fixture(scope="session")
def fx(tmp_path_factory):
    def get(name):
        return fixture(name, tmp_path_factory.mktemp(name))
    return get


def _unet_out(model, ns):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, model.in_channels, 8, 8, generator=g)
    emb = torch.randn(1, 77, model.unet.config.cross_attention_dim, generator=g)
    kw = {}
    if ns.family == "sdxl":
        kw["added_cond_kwargs"] = dict(text_embeds=torch.randn(1, 128, generator=g),
                                       time_ids=torch.tensor([[64.0, 64, 0, 0, 64, 64]]))
    elif ns.family == "sdxl_refiner":
        kw["added_cond_kwargs"] = dict(text_embeds=torch.randn(1, 128, generator=g),
                                       time_ids=torch.tensor([[64.0, 64, 0, 0, 6.0]]))
    with torch.no_grad(), model.use("cpu", torch.float32) as unet:
        return unet(x, torch.tensor([321]), emb, **kw).sample


def _vae_out(vae):
    img = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(1))
    lat = vae.encode(img, device="cpu")
    return lat, vae.decode(lat, device="cpu")


@pytest.mark.parametrize("family", FAMILIES)
def test_single_file_equals_diffusers_folder(fx, family):
    ns = fx(family)
    m1, c1, v1 = load_checkpoint(ns.single_file)
    m2, c2, v2 = load_checkpoint(ns.diffusers_dir)
    assert (m1.family, m2.family) == (ns.family, ns.family)
    assert m1.is_inpaint == m2.is_inpaint == (family == "sd1_inpaint")
    assert m1.prediction_type == m2.prediction_type == ns.prediction
    assert torch.equal(_unet_out(m1, ns), _unet_out(m2, ns))
    assert torch.equal(_unet_out(m1, ns), _unet_out(DiffusionModel_from(ns), ns))
    l1, i1 = _vae_out(v1)
    l2, i2 = _vae_out(v2)
    assert l1.shape == (1, 4, 4, 4) and i1.shape == (1, 32, 32, 3)
    assert torch.equal(l1, l2) and torch.equal(i1, i2)
    assert v1.scaling_factor == v2.scaling_factor == (0.13025 if ns.family.startswith("sdxl") else 0.18215)
    prompt = "a (photo:1.2) of a cat"
    [e1], [e2] = c1.encode(prompt, device="cpu"), c2.encode(prompt, device="cpu")
    assert torch.equal(e1.embeds, e2.embeds)
    assert (e1.pooled is None) == (not ns.family.startswith("sdxl"))
    if e1.pooled is not None:
        assert torch.equal(e1.pooled, e2.pooled)


def DiffusionModel_from(ns):  # noqa: N802 - reads like a constructor
    from nodegen.models.objects import DiffusionModel

    return DiffusionModel.from_unet(ns.unet, ns.family, ns.prediction)


def test_sd2_drops_the_last_open_clip_layer(fx):
    ns = fx("sd2")
    _, clip, _ = load_checkpoint(ns.single_file)
    # the file holds one layer more than diffusers' text encoder; it is dropped as diffusers does
    assert clip.encoders[0].config.num_hidden_layers == ns.text_encoder.config.num_hidden_layers
    assert "cond_stage_model.model.transformer.resblocks.2.ln_1.weight" in ns.ldm_state_dict


@pytest.mark.parametrize("family", FAMILIES)
def test_fp16_file_loads_upcast_on_cpu(fx, family):
    ns = fx(family)
    m, c, v = load_checkpoint(ns.single_file_fp16)
    assert m.unet.dtype == torch.float32 and v.vae.dtype == torch.float32
    ref = load_checkpoint(ns.single_file)[0]
    # weights are the fp32 ones rounded to fp16
    w = dict(m.unet.named_parameters())["conv_in.weight"]
    w_ref = dict(ref.unet.named_parameters())["conv_in.weight"]
    assert torch.equal(w, w_ref.half().float())
    torch.testing.assert_close(_unet_out(m, ns), _unet_out(ref, ns), rtol=0.02, atol=0.02)


def test_ckpt_loads_with_weights_only(fx, tmp_path):
    ns = fx("sd1")
    m, c, v = load_checkpoint(ns.ckpt)
    assert torch.equal(_unet_out(m, ns), _unet_out(load_checkpoint(ns.single_file)[0], ns))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": Evil()}, str(bad))
    with pytest.raises(ModelFileError, match="weights_only=True"):
        load_checkpoint(bad)


@pytest.mark.parametrize("name,family,inpaint,pred", [
    ("sd1", "sd1", False, "epsilon"), ("sd2", "sd2", False, "v_prediction"),
    ("sdxl", "sdxl", False, "epsilon"), ("sdxl_refiner", "sdxl_refiner", False, "epsilon"),
    ("sd1_inpaint", "sd1", True, "epsilon")])
def test_detect_checkpoints(fx, name, family, inpaint, pred):
    ns = fx(name)
    for path in (ns.single_file, ns.single_file_fp16):
        d = detect(read_shapes(path))
        assert (d.kind, d.family, d.inpaint, d.prediction) == ("checkpoint", family, inpaint, pred)


def test_detect_parts_and_other_kinds(fx):
    sd = fx("sd1").ldm_state_dict
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    vae_only = {k.removeprefix("first_stage_model."): s for k, s in shapes.items() if k.startswith("first_stage_model.")}
    assert detect(vae_only).kind == "vae"
    unet_only = {k: s for k, s in shapes.items() if k.startswith("model.diffusion_model.")}
    assert (detect(unet_only).kind, detect(unet_only).family) == ("unet", "sd1")
    sd2_unet = {k: tuple(v.shape) for k, v in fx("sd2").ldm_state_dict.items() if k.startswith("model.")}
    assert detect(sd2_unet).family == "sd2"
    te = {k: s for k, s in shapes.items() if k.startswith("cond_stage_model.")}
    assert detect(te).kind == "text_encoder"
    assert detect({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 32)}).layout == "kohya"
    assert detect({"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": (4, 32)}).kind == "lora"
    assert detect({"control_model.time_embed.0.weight": (4, 4)}).kind == "controlnet"
    assert detect({"conv_first.weight": (64, 3, 3, 3), "body.0.rdb1.conv1.weight": (32, 64, 3, 3)}).kind == "upscaler"
    assert detect({"foo": (1,)}).kind == "unknown"
    sdxl = {k: tuple(v.shape) for k, v in fx("sdxl").ldm_state_dict.items()}
    refiner_like = {k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): s for k, s in sdxl.items()
                    if not k.startswith("conditioner.embedders.0.")}
    assert detect(refiner_like).family == "sdxl_refiner"
    assert detect({**shapes, "v_pred": (0,)}).prediction == "v_prediction"


def test_lora_is_not_a_checkpoint(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "style.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4)}, str(path))
    with pytest.raises(ModelKindError, match=r"style\.safetensors: this is a LoRA, not a checkpoint: use a LoRA loader"):
        load_checkpoint(path)
    with pytest.raises(ModelKindError, match="this is a LoRA, not a VAE"):
        load_vae(path)


def test_prediction_override_and_bad_value(fx):
    ns = fx("sd2")
    m, _, _ = load_checkpoint(ns.single_file, prediction="epsilon")
    assert m.prediction_type == "epsilon"
    with pytest.raises(ValueError, match="prediction must be one of"):
        load_checkpoint(ns.single_file, prediction="x0")


def test_load_vae_file_forms(fx, tmp_path):
    from safetensors.torch import save_file

    ns = fx("sd1")
    ref_lat, ref_img = _vae_out(load_checkpoint(ns.single_file)[2])
    ldm_vae = {k.removeprefix("first_stage_model."): v for k, v in ns.ldm_state_dict.items()
               if k.startswith("first_stage_model.")}
    p1 = tmp_path / "vae-ldm.safetensors"
    save_file(ldm_vae, str(p1))
    p2 = tmp_path / "vae-diffusers.safetensors"
    save_file({k: v.contiguous() for k, v in ns.vae.state_dict().items()}, str(p2), metadata={"scaling_factor": "0.13025"})
    for p, sf in ((p1, 0.18215), (p2, 0.13025), (ns.single_file, 0.18215), (ns.diffusers_dir, 0.18215)):
        vae = load_vae(p)
        assert vae.scaling_factor == sf
        lat, img = _vae_out(vae)
        if sf == 0.18215:
            assert torch.equal(lat, ref_lat) and torch.equal(img, ref_img), p
        else:  # same VAE, other latent scale
            torch.testing.assert_close(lat / sf, ref_lat / 0.18215, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(img, ref_img, rtol=1e-5, atol=1e-5)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_checkpoint(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ModelFileError, match="bad.safetensors"):
        load_checkpoint(bad)
